"""The data plane: frames, ring buffers, ports and links, ``Actor``, the registry (URIs, ports), limits and the trust policy.

Imports only :mod:`streamlib.errors`, :mod:`streamlib.clocks` and :mod:`streamlib.media`.
"""
