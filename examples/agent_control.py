"""An agent builds a pipeline in a running graph over HTTP, then inspects and edits it.

    python examples/agent_control.py [SECONDS]

The runtime starts empty; every actor and link below is made through the
control plane (streamlib.control.server), exactly as a separate agent process or
`curl` would do it, sending the server's bearer token with every request.
"""

import json
import sys
import time
import urllib.request
from typing import Any

import streamlib as sl
from streamlib.control.server import ControlServer


def call(method: str, url: str, body: object = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    # server.headers: the bearer token every request needs, and the JSON content type
    request = urllib.request.Request(url, data=data, method=method, headers=server.headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
with sl.Runtime(name="agent") as rt, ControlServer(rt) as server:
    rt.start()
    api = server.url
    print(f"control: {api}")
    quiet = {"report_interval_s": None, "printer": None}
    call("POST", f"{api}/actors", {"id": "stats", "type": "StatsSink", "params": quiet})
    call("POST", f"{api}/actors", {"id": "invert", "type": "TransformActor", "params": {"fn": "invert"}})
    call("POST", f"{api}/actors", {"id": "bars", "type": "TestPatternActor", "clock": {"fps": 30},
                                   "params": {"width": 320, "height": 180, "pattern": "smpte_bars"}})
    call("POST", f"{api}/connections", {"from": "bars", "to": "invert"})
    call("POST", f"{api}/connections", {"from": "invert.video", "to": "stats.in"})
    time.sleep(seconds)  # the graph runs; the agent could do anything meanwhile
    graph = call("GET", f"{api}/graph")
    for a in graph["actors"]:
        print(f"actor {a['id']} {a['class']} {a['status']} processed {a['counters']['processed']}")
    for link in graph["links"]:
        print(f"link {link['from']} -> {link['to']} written {link['written']} dropped {link['dropped']}")
    call("DELETE", f"{api}/actors/bars")
    print("after DELETE /actors/bars:", " ".join(a["id"] for a in call("GET", f"{api}/actors")))
