"""``make run``: the whole platform on one machine with its embedded defaults.

One embedded PostgreSQL + pgvector under ``DATA_DIR`` shared by both apps, the registry on
127.0.0.1:8000 and the ToT server on 127.0.0.1:8001 (metrics on 8080 and 8081). ``AUTH_MODE=jwt``
keeps authentication on, with the ToT server as the issuer. Ctrl-C or SIGTERM stops the apps, then
the database: nothing is left running.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from platform_common.embedded_postgres import EmbeddedPostgresError, embedded_postgres_server
from platform_common.logs import configure_logging

logger = logging.getLogger("devstack")

REGISTRY_PORT, TOT_PORT = 8000, 8001


TOT_URL = f"http://127.0.0.1:{TOT_PORT}"


def _app_env(database_url: str, metrics_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AUTH_MODE", "none")
    env.setdefault("LOG_FORMAT", "text")
    # With AUTH_MODE=jwt the ToT server issues tokens and the registry verifies them with its JWKS.
    env.setdefault("ISSUER_URL", TOT_URL)
    env.setdefault("AUTH_ISSUER", TOT_URL)
    env.setdefault("AUTH_JWKS_URL", f"{TOT_URL}/.well-known/jwks.json")
    env.update({"DATABASE_URL": database_url, "METRICS_PORT": str(metrics_port), "HOST": "127.0.0.1"})
    return env


def main() -> None:
    configure_logging("INFO", "text")
    data_dir = Path(os.environ.get("DATA_DIR", "./.data"))
    children: list[subprocess.Popen[str]] = []

    def stop(signum: int, _: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        with embedded_postgres_server(data_dir) as pg:
            commands = [
                (["tool-registry", "serve", "--port", str(REGISTRY_PORT)], _app_env(pg.url, 8080)),
                (["tot", "serve", "--port", str(TOT_PORT)], _app_env(pg.url, 8081)),
            ]
            for argv, env in commands:
                children.append(subprocess.Popen(argv, env=env, text=True))
            if os.environ.get("AUTH_MODE", "none") == "none":
                logger.warning("AUTH_MODE=none: authentication is off (local runs only; AUTH_MODE=jwt turns it on)")
            else:
                # Each service accepts only tokens minted for its own audience.
                print(
                    "  Authentication is on. A token for each service:\n"
                    f"    DATA_DIR={data_dir} ISSUER_URL={TOT_URL} uv run tot token issue --sub dev "
                    '--aud tool-registry --scope "registry:read registry:write registry:call"\n'
                    f"    DATA_DIR={data_dir} ISSUER_URL={TOT_URL} uv run tot token issue --sub dev "
                    '--aud tree-of-thoughts --scope "tot:run tot:read"\n',
                    flush=True,
                )
            print(
                f"\n  Tool Registry      http://127.0.0.1:{REGISTRY_PORT}  (MCP: /mcp, API docs: /schema)\n"
                f"  Tree-of-Thoughts   http://127.0.0.1:{TOT_PORT}  (MCP: /mcp, API docs: /schema)\n"
                f"  Metrics            http://127.0.0.1:8080/metrics, http://127.0.0.1:8081/metrics\n"
                f"  Data               {data_dir.resolve()}\n  Press Ctrl-C to stop.\n",
                flush=True,
            )
            try:
                while all(child.poll() is None for child in children):
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            finally:
                stop(signal.SIGTERM, None)
                for child in children:
                    try:
                        child.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        child.kill()
    except EmbeddedPostgresError as exc:
        sys.exit(f"make run: {exc}")
    clean_exits = (0, -signal.SIGTERM, -signal.SIGINT)
    failed = [
        name
        for name, child in zip(("tool-registry", "tot"), children, strict=True)
        if child.returncode not in clean_exits
    ]
    if failed:
        sys.exit(f"stopped because {', '.join(map(str, failed))} exited with an error")


if __name__ == "__main__":
    main()
