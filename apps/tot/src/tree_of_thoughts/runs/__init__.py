"""Long-running Tree-of-Thoughts runs: models, stores (memory, PostgreSQL), the service, tree drawing."""

from __future__ import annotations

from platform_common.db import Database
from tree_of_thoughts.config import TotSettings
from tree_of_thoughts.llm import LLMClient
from tree_of_thoughts.runs.models import Run, RunPage, RunRequest, RunTree, RunView
from tree_of_thoughts.runs.postgres import PostgresRunStore
from tree_of_thoughts.runs.service import RunService
from tree_of_thoughts.runs.store import MemoryRunStore, RunStore

__all__ = [
    "MemoryRunStore",
    "PostgresRunStore",
    "Run",
    "RunPage",
    "RunRequest",
    "RunService",
    "RunStore",
    "RunTree",
    "RunView",
    "build_run_service",
]


def build_run_service(settings: TotSettings, database: Database | None) -> RunService:
    """Runs in PostgreSQL when there is a database, else in this process's memory; one shared LLM client."""
    store: RunStore = PostgresRunStore(database) if database is not None else MemoryRunStore()
    llm = (
        LLMClient(settings.llm_base_url, model=settings.llm_model, api_key=settings.llm_api_key or None)
        if settings.llm_base_url
        else None
    )
    return RunService(store, settings, llm)
