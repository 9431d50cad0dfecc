"""Checking a caller's arguments against a tool's input schema without risking the event loop.

Schemas come from upstream servers and admins, arguments from agents: both are untrusted, and a
``pattern`` such as ``^(a+)+$`` makes a backtracking engine (Python's ``re``, which the
``jsonschema`` package uses) take exponential time on a short argument, on the event loop. So
validation uses ``jsonschema-rs``, whose ``RegexOptions`` select Rust's ``regex`` crate: finite
automata, linear in the input, no backreferences or look-around. A schema that needs those cannot
be checked and is rejected when it is written (``schema_problem``), so calls never meet one. The
validator runs offline: a ``$ref`` to a URL is an error, never a request from the registry.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import jsonschema_rs

MAX_ERRORS = 10
MAX_MESSAGE_CHARS = 200
QUOTED_VALUE_CHARS = 40
_LINEAR_REGEX = jsonschema_rs.RegexOptions()


def _validator(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A compiled Draft 2020-12 validator; raises ``ValueError`` if the schema cannot be compiled."""
    try:
        return jsonschema_rs.Draft202012Validator(schema, pattern_options=_LINEAR_REGEX, offline=True)
    except jsonschema_rs.ReferencingError as exc:  # not a ValueError subclass
        raise ValueError(str(exc)) from exc


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why the linear-time validator cannot use ``schema`` (e.g. a look-ahead pattern), or None."""
    try:
        _validator(schema)
    except ValueError as exc:
        return _first_line(str(exc))
    return None


def argument_errors(schema: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    """At most ``MAX_ERRORS`` problems of ``arguments``, each ``path: message``, shortened.

    Messages quote the offending value, which may be large: the value is cut to ``QUOTED_VALUE_CHARS``
    and the whole message to ``MAX_MESSAGE_CHARS``.
    """
    try:
        validator = _validator(schema)
    except ValueError as exc:
        return [f"(schema): the tool's input_schema cannot be checked: {_first_line(str(exc))}"]
    errors = itertools.islice(validator.iter_errors(arguments), MAX_ERRORS)
    return [f"{'/'.join(map(str, e.instance_path)) or '(root)'}: {_message(e)}" for e in errors]


def _message(error: jsonschema_rs.ValidationError) -> str:
    """The error's message with a long quoted value shortened, so the reason (after it) survives."""
    text = error.message
    quoted = json.dumps(error.instance, ensure_ascii=False)
    if len(quoted) > QUOTED_VALUE_CHARS and quoted in text:
        text = text.replace(quoted, quoted[:QUOTED_VALUE_CHARS] + "…")
    return _shorten(text)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _first_line(text: str) -> str:
    return _shorten(text.strip().splitlines()[0] if text.strip() else "invalid schema")
