"""What a search returns: the whole tree plus a summary, as msgspec Structs."""

from __future__ import annotations

from typing import Literal

import msgspec

StopReason = Literal[
    "solved", "exhausted", "max_depth", "max_nodes", "max_llm_calls", "max_tokens", "timeout", "cancelled"
]


class Node(msgspec.Struct, kw_only=True):
    id: int
    parent: int | None
    depth: int
    state: str
    thought: str
    score: float | None = None
    pruned: bool = False
    terminal: bool = False
    on_best_path: bool = False


class SearchStats(msgspec.Struct, kw_only=True):
    nodes_expanded: int = 0
    nodes_generated: int = 0
    nodes_evaluated: int = 0
    duplicates_skipped: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rounds: int = 0
    elapsed_seconds: float = 0.0


class SearchResult(msgspec.Struct, kw_only=True):
    answer: str | None
    solved: bool
    stop_reason: StopReason
    best_node_id: int
    stats: SearchStats
    nodes: list[Node]
