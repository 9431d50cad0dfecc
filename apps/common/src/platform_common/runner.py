"""Run an app: logs, the metrics port, then uvicorn with the configured number of workers."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import uvicorn
import uvicorn.importer

from platform_common.logs import configure_logging
from platform_common.protocol import LimitedHttpToolsProtocol
from platform_common.settings import BaseSettings, SettingsError

logger = logging.getLogger(__name__)

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _prepare_multiprocess_dir() -> Path:
    # Must happen before prometheus_client is first imported (it picks its storage then): imported
    # earlier, the metrics of a one-worker server (which serves in this process) would never be exported.
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the runner set PROMETHEUS_MULTIPROC_DIR")
    directory = Path(os.environ.get(_MULTIPROC_ENV) or tempfile.mkdtemp(prefix="mcp-metrics-"))
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[_MULTIPROC_ENV] = str(directory)
    return directory


def serve(settings: BaseSettings, factory: str) -> None:
    """Serve ``factory`` (``module:function`` returning the ASGI app) until SIGINT/SIGTERM.

    On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish; the chart's
    preStop delay gives the Service time to stop routing here first.
    """
    configure_logging(settings.log_level, settings.log_format)
    # Workers (and the factory below) read the effective settings from a private file, never from
    # exported variables: a secret given as a flag must not become an environment variable.
    handoff = settings.write_handoff()
    try:
        _serve(settings, factory)
    finally:
        shutil.rmtree(handoff.parent, ignore_errors=True)


def _serve(settings: BaseSettings, factory: str) -> None:
    metrics_dir = _prepare_multiprocess_dir()
    try:
        # Build the app once here: a configuration error then ends the command with one clear
        # line, instead of a traceback from every worker process.
        uvicorn.importer.import_from_string(factory)()
    except SettingsError as exc:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        sys.exit(f"configuration error: {exc}")
    if settings.metrics_port:
        from platform_common.metrics import start_metrics_server

        start_metrics_server(settings.host, settings.metrics_port, workers=settings.workers)
        logger.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the caller's
    # cleanups (stopping an embedded PostgreSQL) still run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            factory,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            # uvicorn's ProxyHeadersMiddleware takes X-Forwarded-For (the right-most address not in
            # this set) and X-Forwarded-Proto only from a trusted peer; the uvicorn we require matches CIDRs.
            proxy_headers=True,
            forwarded_allow_ips=list(settings.forwarded_allow_ips),
            timeout_graceful_shutdown=20,
            server_header=False,
            # httptools (C) parses for a fraction of h11's CPU; uvicorn bounds headers only in h11, so the
            # subclass refuses request heads over 32 KiB with 431 before the app (platform_common.protocol).
            http=LimitedHttpToolsProtocol,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
