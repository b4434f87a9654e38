"""Per-request cost of the guarded protocol (serve/server.py) and the Guard (serve/guard.py).

    python bench/guard_overhead.py          # 4 uvicorn servers on 127.0.0.1, a trivial app each

The app reads a 56 KB body and answers "ok", so what is left is the HTTP path: uvicorn's
httptools protocol alone, with edgeship's guarded protocol, with the Guard middleware, and with
both (what `edgeship serve` runs). One keep-alive client, 100 requests per server per round, 40
rounds in a shuffled order so that the machine's drift hits every server alike. Prints p50/p90
and writes JSON under bench/results/.
"""
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

CODE = r'''
import sys, uvicorn
from edgeship.serve.config import ServeConfig
from edgeship.serve.guard import Guard
from edgeship.serve.server import protocol_for
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        m = await receive(); more = m.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
port, proto, guard = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1"
cfg = ServeConfig()
a = Guard(app, cfg) if guard else app
uvicorn.run(a, host="127.0.0.1", port=port, log_level="warning", http=protocol_for(cfg) if proto else "httptools")
'''
def free():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


body = os.urandom(56000)
servers = {}
for name, proto, guard in (("plain", 0, 0), ("protocol", 1, 0), ("guard", 0, 1), ("both", 1, 1)):
    port = free()
    servers[name] = (port, subprocess.Popen([sys.executable, "-c", CODE, str(port), str(proto), str(guard)]))
time.sleep(4)
req = (b"POST /v1/models/m/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
lat = {n: [] for n in servers}
socks = {n: socket.create_connection(("127.0.0.1", p)) for n, (p, _) in servers.items()}
for r in range(40):
    order = list(servers)
    random.Random(r).shuffle(order)
    for n in order:
        s = socks[n]
        for _ in range(100):
            t = time.perf_counter()
            s.sendall(req)
            d = b""
            while not d.endswith(b"ok"):
                d += s.recv(65536)
            lat[n].append(time.perf_counter() - t)
for _, p in servers.values():
    p.terminate()

rows = {}
for n, v in lat.items():
    v.sort()
    rows[n] = {"p50_ms": round(v[len(v) // 2] * 1e3, 4), "p90_ms": round(v[int(len(v) * .9)] * 1e3, 4),
               "mean_ms": round(statistics.mean(v) * 1e3, 4), "requests": len(v)}
    print(f"{n:9s} p50 {rows[n]['p50_ms']:.3f} ms  p90 {rows[n]['p90_ms']:.3f} ms  mean {rows[n]['mean_ms']:.3f} ms  n={len(v)}")
out = Path(__file__).resolve().parent / "results" / "guard_overhead.json"
out.write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "loadavg": open("/proc/loadavg").read().split()[:3],
                           "body_bytes": len(body), "servers": rows}, indent=2) + "\n")
print(f"wrote {out}")
