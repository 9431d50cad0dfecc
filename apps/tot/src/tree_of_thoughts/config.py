"""The Tree-of-Thoughts server's settings (environment variables and ``tot`` flags)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from platform_common.settings import BaseSettings, SettingsError


class TotSettings(BaseSettings, frozen=True, kw_only=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535, description="API port.")] = 8001
    auth_audience: Annotated[
        str, msgspec.Meta(description="Expected token audience (aud), and the default audience of issued tokens.")
    ] = "tree-of-thoughts"
    llm_base_url: Annotated[
        str, msgspec.Meta(description="OpenAI-compatible base URL (e.g. http://vllm:8000/v1). Empty: no LLM.")
    ] = ""
    llm_api_key: Annotated[str, msgspec.Meta(description="API key for the LLM (secret).")] = ""
    llm_model: Annotated[str, msgspec.Meta(description="Model name sent to the LLM.")] = "gpt-4o-mini"
    max_thoughts_depth: Annotated[int, msgspec.Meta(ge=1, le=50, description="Default and largest search depth.")] = 5
    evaluation_strategy: Annotated[
        Literal["value", "vote", "heuristic", "hybrid"], msgspec.Meta(description="Default evaluator.")
    ] = "hybrid"
    jwt_expiration_hours: Annotated[float, msgspec.Meta(gt=0, le=720, description="Lifetime of issued tokens.")] = 24
    jwks_cache_max_age: Annotated[
        int, msgspec.Meta(ge=0, le=86400, description="Cache-Control max-age of the JWKS, seconds.")
    ] = 3600
    key_rotation_hours: Annotated[float, msgspec.Meta(gt=0, description="Age at which the signing key is rotated.")] = (
        168
    )
    key_overlap_hours: Annotated[float, msgspec.Meta(ge=0, description="How long a retired key stays in the JWKS.")] = (
        48
    )
    key_reload_seconds: Annotated[
        float, msgspec.Meta(ge=1, le=3600, description="How often every replica re-reads the key store, seconds.")
    ] = 60
    key_store_max_staleness_seconds: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="A replica that could not read the key store for this long stops issuing tokens "
            "and reports not ready.",
        ),
    ] = 180
    key_store: Annotated[Literal["file", "kubernetes"], msgspec.Meta(description="Where signing keys live.")] = "file"
    key_secret_name: Annotated[str, msgspec.Meta(description="Kubernetes Secret holding the key set.")] = ""
    key_secret_namespace: Annotated[str, msgspec.Meta(description="Namespace of that Secret.")] = ""
    issuer_url: Annotated[
        str, msgspec.Meta(description="Public URL of this issuer (iss); default http://HOST:PORT.")
    ] = ""
    oauth_clients: Annotated[
        str,
        msgspec.Meta(description='OAuth clients as JSON: [{"client_id", "secret_sha256", "scopes"}] (secret).'),
    ] = ""
    run_ttl_hours: Annotated[float, msgspec.Meta(gt=0, description="How long finished runs are kept.")] = 168
    max_run_nodes: Annotated[
        int, msgspec.Meta(ge=1, le=1_000_000, description="Default and largest tree size (nodes) of one run.")
    ] = 5_000
    max_run_llm_calls: Annotated[
        int, msgspec.Meta(ge=1, le=100_000, description="Default and largest number of LLM calls of one run.")
    ] = 300
    max_run_tokens: Annotated[
        int, msgspec.Meta(ge=1, le=100_000_000, description="Default and largest LLM token budget of one run.")
    ] = 300_000
    max_run_seconds: Annotated[
        float, msgspec.Meta(gt=0, le=86_400, description="Default and largest wall-clock time of one run.")
    ] = 600
    max_active_runs_per_owner: Annotated[
        int, msgspec.Meta(ge=1, le=1000, description="Queued plus running runs one caller may have at once.")
    ] = 5
    max_concurrent_runs: Annotated[
        int, msgspec.Meta(ge=1, le=1000, description="Runs searching at once per worker process; more wait queued.")
    ] = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.key_store_max_staleness_seconds <= self.key_reload_seconds:
            # Otherwise every replica would turn unready between two healthy reloads.
            raise SettingsError("KEY_STORE_MAX_STALENESS_SECONDS must exceed KEY_RELOAD_SECONDS")
