import sys

from streamlib.control.cli import main

sys.exit(main())
