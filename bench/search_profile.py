"""Where a search's CPU goes: py-spy samples of the registry process under wrk load, grouped by layer,
and CPU per request of the registry and of PostgreSQL from /proc.

    uv run python bench/search_profile.py [--tools 10000] [--seconds 20]

One registry worker on a catalogue of synthetic tools (bench/_catalogue.py); wrk POSTs the same hybrid
search (limit 10, its query embedding cached after the first) at concurrency 16. py-spy (a dev
dependency) samples the registry's on-CPU stacks; each sample counts for the layer of its innermost frame
that belongs to one (stdlib and C frames count for their caller's layer). CPU per request =
utime+stime deltas (registry process; PostgreSQL's postmaster children) over the requests wrk
completed: meaningful on a loaded machine, where latency is not. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import httpx
from _catalogue import free_port, fresh_database, import_chunks, postgres, registry_process, synthetic_tools

from platform_common.embedded_postgres import EmbeddedPostgres

# uv run puts the venv's bin on PATH; a plain .venv/bin/python does not.
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
BODY = '{"query": "weather forecast for a city tomorrow", "limit": 10}'
# Innermost frame's file → layer; the first pattern that matches wins.
LAYERS = [
    ("HTTP server (uvicorn, httptools)", r"uvicorn/|httptools"),
    ("Litestar (routing, DI, responses)", r"litestar/"),
    ("msgspec (JSON, validation)", r"msgspec/"),
    ("asyncpg (protocol, codecs, pool)", r"asyncpg/"),
    ("pgvector codec, numpy", r"pgvector/|numpy/"),
    ("metrics (prometheus_client)", r"prometheus_client/"),
    ("logging", r"/logging/|platform_common/logs\\.py"),
    ("auth, rate limits", r"platform_common/(auth|jwt|ratelimit|sharedlimit)\\.py"),
    ("platform_common HTTP shell", r"platform_common/"),
    ("registry: search, policy, models", r"tool_registry/"),
    ("asyncio event loop", r"asyncio/|selectors\\.py|uvloop"),
]


OTHER = "other (C, Python runtime)"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(server: EmbeddedPostgres) -> float:
    """CPU of the postmaster's children (backends, writer, WAL): this server's, not another's."""
    postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                continue
    return total


def layer(stack: str) -> str:
    """The layer of the innermost frame that belongs to one (a stdlib or C frame counts for its caller's)."""
    for frame in reversed(stack.split(";")):
        for name, pattern in LAYERS:
            if re.search(pattern, frame):
                return name
    return OTHER


def wrk(url: str, seconds: int) -> int:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n")
    try:
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{seconds}s", "-s", str(script), f"{url}/api/v1/search"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        script.unlink()
    match = re.search(r"(\d+) requests in", out)
    if match is None or "Non-2xx" in out:
        raise RuntimeError(out)
    return int(match.group(1))


def profile(server: EmbeddedPostgres, url: str, pid: int, seconds: int) -> list[dict[str, object]]:
    wrk(url, 2)  # warm up: the query's embedding is cached, PostgreSQL's buffers are warm
    raw = Path(tempfile.mkstemp(suffix=".txt")[1])
    command = f"{PY_SPY} record --pid {pid} --duration {seconds} --rate 200 --format raw --nonblocking --output {raw}"
    spy = subprocess.Popen(
        command.split(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    registry_before, postgres_before = cpu_seconds(pid), postgres_cpu(server)
    requests = wrk(url, seconds)
    registry_used, postgres_used = cpu_seconds(pid) - registry_before, postgres_cpu(server) - postgres_before
    spy.wait(timeout=60)
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack:
            counts[layer(stack)] += int(samples)
    raw.unlink()
    total = sum(counts.values()) or 1
    rows: list[dict[str, object]] = [
        {"part": "registry CPU ms/request", "value": round(registry_used / requests * 1000, 3)},
        {"part": "PostgreSQL CPU ms/request", "value": round(postgres_used / requests * 1000, 3)},
        {"part": "requests/s (wrk c=16)", "value": round(requests / seconds)},
    ]
    for name in [name for name, _ in LAYERS] + [OTHER]:
        rows.append({"part": f"registry samples: {name} (%)", "value": round(100 * counts[name] / total, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if shutil.which("wrk") is None or not Path(PY_SPY).exists():
        sys.exit("needs wrk (make bench-packages) and py-spy (a dev dependency)")
    with postgres() as server:
        database_url = asyncio.run(fresh_database(server))
        pids: list[int] = []
        with registry_process(database_url, free_port(), pids) as url:

            async def load() -> None:
                async with httpx.AsyncClient(base_url=url, timeout=600) as http:
                    await import_chunks(http, synthetic_tools(args.tools))
                # Current statistics whatever the version measured (older ones left it to autovacuum).
                conn = await asyncpg.connect(database_url)
                try:
                    await conn.execute("ANALYZE")
                finally:
                    await conn.close()

            asyncio.run(load())
            rows = profile(server, url, pids[0], args.seconds)
    for row in rows:
        print(f"{row['part']:60s} {row['value']}")
    if args.json:
        description = f"Search CPU per request and by layer (py-spy), {args.tools:,} tools, one registry worker"
        args.json.write_text(json.dumps({"bench": "search_profile", "description": description, "rows": rows}))


if __name__ == "__main__":
    main()
