"""Liveness and readiness: ``/health`` touches nothing, ``/ready`` checks what the app depends on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import msgspec
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

ReadinessCheck = Callable[[], Awaitable[str | None]]


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
