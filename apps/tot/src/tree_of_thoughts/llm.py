"""Client for OpenAI-compatible chat completion servers.

The search engine makes many small, independent LLM calls concurrently; this client
bounds that concurrency, retries what is worth retrying (429, 5xx, transport errors)
with exponential backoff and jitter, and reports token usage per call so the engine can
enforce a per-run token budget.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

import httpx
import msgspec

__all__ = ["ChatMessage", "Completion", "LLMClient", "LLMError"]


class LLMError(Exception):
    """An LLM call failed; the message is safe to show (it never contains the API key)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    content: str


class Completion(msgspec.Struct, frozen=True):
    """The text of every returned choice and the tokens this one call consumed."""

    texts: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _ChoiceMessage(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _ChoiceMessage


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _ChatResponse(msgspec.Struct):
    choices: list[_Choice]
    usage: _Usage | None = None


class _ChatRequest(msgspec.Struct, omit_defaults=True):
    model: str
    messages: Sequence[ChatMessage]
    temperature: float
    max_tokens: int
    n: int = 1


_BODY_SNIPPET = 200


class LLMClient:
    """Async client for `POST {base_url}/chat/completions`.

    One instance is meant to be shared by every run of a process: its semaphore is the
    process-wide cap on concurrent requests to the provider.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        max_concurrency: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("LLM base_url must start with http:// or https://")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._api_key = api_key or None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            timeout=timeout,
            headers=headers,
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LLMClient | None:
        """Build a client from LLM_BASE_URL, LLM_API_KEY and LLM_MODEL; None when no LLM is configured."""
        env = os.environ if env is None else env
        base_url = env.get("LLM_BASE_URL", "").strip()
        if not base_url:
            return None
        model = env.get("LLM_MODEL", "").strip()
        if not model:
            raise ValueError("LLM_MODEL must be set when LLM_BASE_URL is set")
        return cls(base_url, model=model, api_key=env.get("LLM_API_KEY", "").strip() or None)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        n: int = 1,
        temperature: float = 0.7,
        max_tokens: int = 512,
    ) -> Completion:
        """One chat completion (n choices), retried on 429/5xx/transport errors."""
        body = msgspec.json.encode(
            _ChatRequest(model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens, n=n)
        )
        attempt = 0
        while True:
            async with self._semaphore:
                outcome = await self._attempt(body)
            if isinstance(outcome, Completion):
                return outcome
            error, retry_after = outcome
            if attempt >= self.max_retries or not _is_retryable(error.status):
                raise error
            await asyncio.sleep(self._backoff(attempt, retry_after))
            attempt += 1

    async def _attempt(self, body: bytes) -> Completion | tuple[LLMError, float | None]:
        """Send once; return the completion, or the error with any Retry-After delay."""
        try:
            response = await self._http.post(
                f"{self.base_url}/chat/completions",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            message = f"LLM request failed: {type(exc).__name__}: {self._scrub(str(exc))}"
            return LLMError(message), None
        if response.status_code != 200:
            snippet = self._scrub(response.text[:_BODY_SNIPPET])
            error = LLMError(f"LLM server answered HTTP {response.status_code}: {snippet}", status=response.status_code)
            return error, _retry_after_seconds(response.headers.get("Retry-After"))
        try:
            decoded = msgspec.json.decode(response.content, type=_ChatResponse)
        except msgspec.DecodeError as exc:
            raise LLMError(f"LLM server sent an invalid chat completion: {exc}", status=200) from None
        usage = decoded.usage or _Usage()
        texts = [choice.message.content or "" for choice in decoded.choices]
        return Completion(texts=texts, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; a server's Retry-After wins when it asks for longer."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0**attempt)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _scrub(self, text: str) -> str:
        """Servers sometimes echo the credential back in error bodies; never pass it on."""
        return text.replace(self._api_key, "***") if self._api_key else text

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _is_retryable(status: int | None) -> bool:
    """Transport errors (no status), rate limits and server errors are transient; other 4xx are not."""
    return status is None or status == 429 or status >= 500


def _retry_after_seconds(value: str | None) -> float | None:
    """Parse Retry-After given either as seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
