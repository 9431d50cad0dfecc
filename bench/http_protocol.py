"""CPU per request of uvicorn's HTTP/1.1 protocols: h11 (what the runner used), plain httptools, and
httptools with the head limit (what it uses now, platform_common/protocol.py), serving a trivial ASGI
app with ``wrk``.

    uv run python bench/http_protocol.py [--seconds 5]

The server is its own process; its CPU (utime+stime from /proc/<pid>/stat) divided by the requests wrk
completed is the parser's and uvicorn's cost per request, meaningful on a loaded machine where
latency is not. Needs ``wrk`` (make bench-packages).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROTOCOLS = ("h11", "httptools", "httptools+limit")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """200 with a small JSON body; no lifespan."""
    if scope["type"] != "http":
        return
    body = b'{"status":"ok"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(protocol: str, port: int) -> None:
    import uvicorn

    from platform_common.protocol import LimitedHttpToolsProtocol

    http: Any = LimitedHttpToolsProtocol if protocol == "httptools+limit" else protocol
    uvicorn.run(app, host="127.0.0.1", port=port, http=http, lifespan="off", log_level="warning", access_log=False)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def measure(protocol: str, seconds: int) -> dict[str, object]:
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", protocol, "--port", str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/"
        subprocess.run(["wrk", "-t1", "-c16", "-d1s", url], capture_output=True, check=True)  # warm up
        before = cpu_seconds(server.pid)
        out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds}s", url], capture_output=True, text=True, check=True)
        used = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    match = re.search(r"(\d+) requests in", out.stdout)
    requests = int(match.group(1)) if match else 0
    return {
        "protocol": protocol,
        "req/s": round(requests / seconds),
        "server CPU µs/request": round(used / max(requests, 1) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--serve", choices=PROTOCOLS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the rows here (bench/report.py reads them)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run make bench-packages")
    rows = []
    for protocol in PROTOCOLS:
        row = measure(protocol, args.seconds)
        rows.append(row)
        print(f"{protocol:16s} {row['req/s']:>7} req/s  {row['server CPU µs/request']:>6} server CPU µs/request")
    if args.json:
        description = "uvicorn HTTP/1.1 protocols, trivial app, wrk -c16, one server process"
        args.json.write_text(json.dumps({"bench": "http_protocol", "description": description, "rows": rows}))


if __name__ == "__main__":
    main()
