"""Real upstream MCP servers for the federation tests: configurable tools, a header recorder, a byte counter."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from litestar import Litestar

from platform_common.http import create_app
from platform_common.mcp import McpApp, McpTool, ToolContext
from tests.servers import free_port


class EchoArgs(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class Echo(msgspec.Struct):
    text: str


class PatternArgs(msgspec.Struct, forbid_unknown_fields=True):
    # Catastrophic backtracking for Python's re: ~4x slower per two more characters.
    word: Annotated[str, msgspec.Meta(pattern="^(a+)+$")]


class SizeArgs(msgspec.Struct, forbid_unknown_fields=True):
    mebibytes: int


async def echo(args: EchoArgs, _: ToolContext) -> Echo:
    return Echo(args.text)


async def pattern_echo(args: PatternArgs, _: ToolContext) -> Echo:
    return Echo(args.word)


async def huge(args: SizeArgs, _: ToolContext) -> Echo:
    return Echo("x" * (args.mebibytes * 1_048_576))


def echo_tool(name: str = "echo", description: str = "Repeat the given text back.") -> McpTool[Any]:
    return McpTool(name=name, description=description, arguments=EchoArgs, result=Echo, handler=echo)


def pattern_tool() -> McpTool[Any]:
    return McpTool(
        name="shout", description="Repeat a word of a's.", arguments=PatternArgs, result=Echo, handler=pattern_echo
    )


def huge_tool() -> McpTool[Any]:
    return McpTool(name="huge", description="Return N MiB of text.", arguments=SizeArgs, result=Echo, handler=huge)


@dataclass
class HeaderLog:
    """The Authorization and Host headers of every request the upstream received."""

    authorization: list[str | None] = field(default_factory=list)
    host: list[str | None] = field(default_factory=list)


def upstream(*tools: McpTool[Any], log: HeaderLog | None = None) -> Any:
    """An MCP server with ``tools``; with ``log``, wrapped to record request headers first."""
    mcp = McpApp(name="upstream", version="1.0.0", instructions="test upstream", tools=list(tools))
    app: Litestar = create_app(route_handlers=[mcp.route()], lifespan=[mcp.lifespan])
    if log is None:
        return app

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            auth, host = headers.get(b"authorization"), headers.get(b"host")
            log.authorization.append(auth.decode() if auth else None)
            log.host.append(host.decode() if host else None)
        await app(scope, receive, send)

    return recording


@dataclass
class ByteCounter:
    """How many bytes a TCP relay passed from the upstream to the registry."""

    to_client: int = 0


@contextlib.contextmanager
def counting_relay(target_port: int) -> Iterator[tuple[int, ByteCounter]]:
    """A TCP relay on 127.0.0.1 to ``target_port`` (in a thread), counting bytes sent back to the client.

    A byte counts once the client's socket accepted it (after ``drain``), so a client that stops
    reading and closes keeps the count near what it read plus the kernel's socket buffers.
    """
    counter = ByteCounter()
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
                if count:
                    counter.to_client += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_reader, up_writer, False), pipe(up_reader, client_writer, True))

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield port, counter
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
