"""Errors the engine raises before searching, meant to become 4xx responses."""

from __future__ import annotations


class LLMRequiredError(ValueError):
    """The requested task, generator or evaluator needs an LLM and none is configured."""
