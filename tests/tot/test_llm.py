"""LLMClient against the scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.tot.llm_double import ChatRequest, Reply, ScriptedLLM
from tree_of_thoughts.llm import ChatMessage, LLMClient, LLMError

HELLO = [ChatMessage(role="user", content="hello there")]


@pytest.fixture
def server() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(lambda req: f"echo {req.prompt}") as llm:
        yield llm


def client_for(server: ScriptedLLM, **kwargs: object) -> LLMClient:
    options: dict[str, object] = {"model": "test-model", "backoff_base": 0.01, "backoff_max": 2.0}
    options.update(kwargs)
    return LLMClient(server.base_url, **options)  # type: ignore[arg-type]


async def test_completion_sends_model_messages_and_counts_tokens(server: ScriptedLLM) -> None:
    async with client_for(server, api_key="sk-secret") as client:
        completion = await client.complete(HELLO, temperature=0.2, max_tokens=50)
    assert completion.texts == ["echo hello there"]
    assert completion.prompt_tokens == 2 and completion.completion_tokens == 3
    body = server.received[0].body
    assert body["model"] == "test-model" and body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert server.received[0].headers["authorization"] == "Bearer sk-secret"


async def test_no_authorization_header_without_key(server: ScriptedLLM) -> None:
    async with client_for(server) as client:
        await client.complete(HELLO)
    assert "authorization" not in server.received[0].headers


async def test_n_choices_are_returned(server: ScriptedLLM) -> None:
    async with client_for(server) as client:
        completion = await client.complete(HELLO, n=3)
    assert len(completion.texts) == 3
    assert server.received[0].body["n"] == 3


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_retries_transient_status_then_succeeds(server: ScriptedLLM, status: int) -> None:
    server.fail(2, status)
    async with client_for(server, max_retries=3) as client:
        completion = await client.complete(HELLO)
    assert completion.texts == ["echo hello there"]
    assert server.requests == 3


async def test_gives_up_after_max_retries(server: ScriptedLLM) -> None:
    server.fail(5, 500)
    async with client_for(server, max_retries=2) as client:
        with pytest.raises(LLMError) as caught:
            await client.complete(HELLO)
    assert caught.value.status == 500
    assert server.requests == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_never_retries_other_client_errors(server: ScriptedLLM, status: int) -> None:
    server.fail(1, status)
    async with client_for(server, max_retries=3) as client:
        with pytest.raises(LLMError) as caught:
            await client.complete(HELLO)
    assert caught.value.status == status
    assert server.requests == 1


async def test_honours_retry_after(server: ScriptedLLM) -> None:
    server.fail(1, 429, retry_after="1")
    async with client_for(server, max_retries=1) as client:
        started = time.monotonic()
        await client.complete(HELLO)
    assert time.monotonic() - started >= 0.95
    assert server.requests == 2


async def test_backoff_grows_exponentially(server: ScriptedLLM) -> None:
    server.fail(3, 503)
    async with client_for(server, max_retries=3, backoff_base=0.1) as client:
        started = time.monotonic()
        await client.complete(HELLO)
    # Jittered delays are at least half of 0.1, 0.2, 0.4.
    assert time.monotonic() - started >= 0.35


async def test_transport_errors_are_retried_then_reported() -> None:
    client = LLMClient("http://127.0.0.1:9/v1", model="m", max_retries=1, backoff_base=0.01, timeout=2)
    async with client:
        with pytest.raises(LLMError, match="LLM request failed"):
            await client.complete(HELLO)


async def test_error_message_never_contains_api_key() -> None:
    key = "sk-very-secret-key"
    echo = Reply(status=401, body=f'{{"error": "Incorrect API key provided: {key}"}}')
    with ScriptedLLM(lambda _req: echo) as server:
        async with client_for(server, api_key=key) as client:
            with pytest.raises(LLMError) as caught:
                await client.complete(HELLO)
    assert key not in str(caught.value)
    assert "401" in str(caught.value)


async def test_invalid_response_is_an_llm_error() -> None:
    with ScriptedLLM(lambda _req: Reply(body="not json")) as server:
        async with client_for(server) as client:
            with pytest.raises(LLMError, match="invalid chat completion"):
                await client.complete(HELLO)


async def test_concurrency_is_bounded() -> None:
    with ScriptedLLM(lambda _req: "x", delay=0.05) as server:
        async with client_for(server, max_concurrency=3) as client:
            await asyncio.gather(*(client.complete(HELLO) for _ in range(10)))
    assert server.requests == 10
    assert server.max_concurrent == 3


def test_from_env() -> None:
    assert LLMClient.from_env({}) is None
    client = LLMClient.from_env({"LLM_BASE_URL": "http://llm:8000/v1/", "LLM_MODEL": "m", "LLM_API_KEY": "k"})
    assert client is not None
    assert client.base_url == "http://llm:8000/v1" and client.model == "m"
    with pytest.raises(ValueError, match="LLM_MODEL"):
        LLMClient.from_env({"LLM_BASE_URL": "http://llm:8000/v1"})


def test_script_sees_request(server: ScriptedLLM) -> None:
    request = ChatRequest(body={"messages": [{"role": "user", "content": "a"}], "n": 2}, headers={})
    assert request.prompt == "a" and request.n == 2
