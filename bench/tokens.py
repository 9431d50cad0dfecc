"""Tokens issued and verified per second on one core (RS256, 2048-bit keys).

    uv run python bench/tokens.py [--seconds 3]

Issuing is what ``POST /oauth/token`` spends on signing; verifying is what every authenticated
request spends in the auth layer (header checks, key lookup, signature, claims), without HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from pathlib import Path

from platform_common.jwt import JwtVerifier
from tree_of_thoughts.issuer.keys import KeyPolicy
from tree_of_thoughts.issuer.manager import KeyManager
from tree_of_thoughts.issuer.stores import FileKeyStore
from tree_of_thoughts.issuer.tokens import TokenIssuer


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


async def main(seconds: float, json_path: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        policy = KeyPolicy.from_settings(rotation_hours=168, overlap_hours=48, token_hours=24, jwks_max_age=3600)
        keys = KeyManager(FileKeyStore(Path(directory)), policy)
        keys.refresh()
        issuer = TokenIssuer(keys, issuer="https://tot.example", audience="mcp-platform", ttl_seconds=3600)
        verifier = JwtVerifier(keys, issuer="https://tot.example", audience="mcp-platform")

        tokens: list[str] = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            tokens.append(issuer.issue("bench", ["registry:read", "tot:run"])[0])
        issued = len(tokens) / (time.perf_counter() - started)

        verified = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            await verifier.verify(tokens[verified % len(tokens)])
            verified += 1
        rate = verified / (time.perf_counter() - started)

    print(f"machine: {_cpu()}, Python {platform.python_version()}, one core")
    print(f"issued:   {issued:8.0f} tokens/s  ({1e3 / issued:.3f} ms each)")
    print(f"verified: {rate:8.0f} tokens/s  ({1e3 / rate:.3f} ms each)")
    if json_path:
        rows = [
            {"operation": "issue (RS256 sign)", "per second": round(issued), "ms each": round(1e3 / issued, 3)},
            {"operation": "verify", "per second": round(rate), "ms each": round(1e3 / rate, 3)},
        ]
        report = {"bench": "tokens", "description": "JWT issue/verify, one core", "rows": rows}
        json_path.write_text(json.dumps(report))  # noqa: ASYNC240 (after the measurement)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Duration of each measurement.")
    parser.add_argument("--json", type=Path, help="also write the results here (bench/report.py contract)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.json))
