"""Liveness and readiness: ``/health`` touches nothing, ``/ready`` checks what the app depends on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import msgspec
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from platform_common.metrics import set_database_up

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[str | None]]

# Seconds between background database probes: the chart's default readinessProbe period, so
# mcp_database_up turns 0 within about one probe period of an outage (plus PROBE_TIMEOUT_SECONDS).
DATABASE_PROBE_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 3.0


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: str
    checks: dict[str, str]
    reason: str | None = None


def health_controller(checks: Mapping[str, ReadinessCheck], timeout: float = 3.0) -> type[Controller]:
    """A controller whose readiness runs ``checks`` (name → returns ``None`` or a reason) concurrently."""

    class HealthController(Controller):
        tags = ["health"]

        @get("/health", summary="Liveness: the process serves requests", cache=False)
        async def health(self) -> Health:
            return Health(status="ok")

        @get(
            "/ready",
            summary="Readiness: 200 when every dependency answers, else 503 with a reason",
            cache=False,
            responses={503: ResponseSpec(data_container=Readiness, description="A dependency is down")},
        )
        async def ready(self) -> Response[Readiness]:
            names = list(checks)
            results = await asyncio.gather(
                *(asyncio.wait_for(checks[name](), timeout) for name in names), return_exceptions=True
            )
            report: dict[str, str] = {}
            for name, result in zip(names, results, strict=True):
                if isinstance(result, BaseException):
                    report[name] = f"check failed: {type(result).__name__}"
                else:
                    report[name] = result or "ok"
            failing = [f"{name}: {state}" for name, state in report.items() if state != "ok"]
            if failing:
                body = Readiness(status="unavailable", checks=report, reason="; ".join(failing))
                return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE)
            return Response(Readiness(status="ready", checks=report), status_code=HTTP_200_OK)

    return HealthController


def tracked_database_check(ping: ReadinessCheck) -> ReadinessCheck:
    """``ping`` (e.g. ``Database.ping``) that also publishes its outcome as ``mcp_database_up``."""

    async def check() -> str | None:
        try:
            reason = await asyncio.wait_for(ping(), PROBE_TIMEOUT_SECONDS)
        except Exception:
            set_database_up(False)
            raise
        set_database_up(reason is None)
        return reason

    return check


@contextlib.asynccontextmanager
async def database_probe(check: ReadinessCheck, interval: float = DATABASE_PROBE_SECONDS) -> AsyncIterator[None]:
    """Run ``check`` now and then every ``interval`` seconds in the background, for a lifespan.

    So ``mcp_database_up`` follows the database in every worker, whether or not anyone calls /ready.
    """

    async def loop() -> None:
        while True:
            await _probe_once(check)
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _probe_once(check: ReadinessCheck) -> None:
    try:
        await check()
    except Exception as exc:  # recorded as down by the check; the loop must survive any failure
        logger.debug("database probe failed: %s", type(exc).__name__)
