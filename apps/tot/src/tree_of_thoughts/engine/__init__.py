"""Tree-of-Thoughts search engine, usable without HTTP.

result = await run_search(get_task("game24"), "4 9 10 13", SearchParams(), llm=None)
"""

from tree_of_thoughts.engine.errors import LLMRequiredError
from tree_of_thoughts.engine.params import EvaluatorName, SearchParams, Strategy
from tree_of_thoughts.engine.result import Node, SearchResult, SearchStats, StopReason
from tree_of_thoughts.engine.search import check_run, run_search

__all__ = [
    "EvaluatorName",
    "LLMRequiredError",
    "Node",
    "SearchParams",
    "SearchResult",
    "SearchStats",
    "StopReason",
    "Strategy",
    "check_run",
    "run_search",
]
