"""Per-tool authorization: which tools a principal may see and call, from the operator's policy file.

Scopes say what kind of operation a caller may perform (``registry:read``, ``registry:call``); the
policy says on which tools. Without it, ``registry:call`` would reach every tool of every upstream
with the registry's own upstream credentials (a confused deputy). The file (``POLICY_FILE``, YAML
or JSON) is a list of rules; each rule matches principals and grants tool-name globs::

    rules:
      - name: developers
        match: {groups: [developers]}        # subjects / groups / scopes: any listed value matches;
        see: ["github.*", "jira.read_*"]     # a rule needs every list it has to match
        call: ["github.*"]
        call_destructive: ["github.delete_branch"]

A principal's rights are the union of the rules that match it. ``call`` implies ``see``, and
``call_destructive`` implies ``call``: a tool annotated ``destructiveHint: true`` is callable only
through ``call_destructive``. Without a file the built-in ``DEFAULT`` applies: every tool visible,
every non-destructive one callable (docs/security.md explains the choice).

The file is re-read every ``POLICY_RELOAD_SECONDS`` (content compared, so the symlink swap of a
ConfigMap volume is seen like any edit); an invalid file at start-up stops the app, an invalid file
later is logged and counted while the last good policy stays in force.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
import yaml

from platform_common.auth import Principal
from platform_common.settings import SettingsError
from tool_registry import observability

logger = logging.getLogger(__name__)

# Tool names are [A-Za-z0-9_.-]; a glob adds * (any run of characters, dots included) and ? (one).
Glob = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.*?-]+$")]
Value = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
MAX_POLICY_BYTES = 1_048_576


class Match(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Which principals a rule applies to; an empty match applies to everyone."""

    subjects: list[Value] = msgspec.field(default_factory=list)
    groups: list[Value] = msgspec.field(default_factory=list)
    scopes: list[Value] = msgspec.field(default_factory=list)

    def applies_to(self, principal: Principal) -> bool:
        """Every non-empty list must hold one of the principal's values."""
        return (
            (not self.subjects or principal.subject in self.subjects)
            and (not self.groups or not principal.groups.isdisjoint(self.groups))
            and (not self.scopes or not principal.scopes.isdisjoint(self.scopes))
        )


class Rule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    match: Match = msgspec.field(default_factory=Match)
    see: list[Glob] = msgspec.field(default_factory=list)
    call: list[Glob] = msgspec.field(default_factory=list)
    call_destructive: list[Glob] = msgspec.field(default_factory=list)


class Policy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    rules: list[Rule]


# No POLICY_FILE: today's behaviour minus destructive tools, which always need an explicit grant.
DEFAULT = Policy(rules=[Rule(name="built-in default", see=["*"], call=["*"])])


class PolicyError(SettingsError):
    """The policy file is missing or invalid; the message names the file and the problem."""


@functools.lru_cache(maxsize=4096)
def glob_regex(glob: str) -> re.Pattern[str]:
    """The glob as an anchored regular expression (its characters are otherwise literal)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob) + r"\Z")


def like_pattern(glob: str) -> str:
    """The glob as a SQL LIKE pattern (backslash escapes ``_``, the only LIKE wildcard names contain)."""
    return glob.replace("_", "\\_").replace("*", "%").replace("?", "_")


@dataclass(frozen=True)
class Access:
    """One principal's rights under the policy in force: three sets of tool-name globs."""

    see: frozenset[str]
    call: frozenset[str]
    call_destructive: frozenset[str]

    def sees(self, name: str) -> bool:
        return _matches(self.see, name)

    def may_call(self, name: str, *, destructive: bool) -> bool:
        return _matches(self.call_destructive if destructive else self.call, name)

    def like_patterns(self) -> list[str] | None:
        """The visible names as LIKE patterns for SQL filters; ``None`` when every tool is visible."""
        return None if "*" in self.see else sorted(like_pattern(glob) for glob in self.see)


def _matches(globs: frozenset[str], name: str) -> bool:
    return "*" in globs or any(glob_regex(glob).match(name) for glob in globs)


# Operator tools (the CLI) act on the whole catalogue.
EVERYTHING = Access(see=frozenset({"*"}), call=frozenset({"*"}), call_destructive=frozenset({"*"}))


def access_for(policy: Policy, principal: Principal) -> Access:
    """The union of the rights of every rule that applies to ``principal`` (call implies see)."""
    see: set[str] = set()
    call: set[str] = set()
    destructive: set[str] = set()
    for rule in policy.rules:
        if rule.match.applies_to(principal):
            destructive.update(rule.call_destructive)
            call.update(rule.call, rule.call_destructive)
            see.update(rule.see, rule.call, rule.call_destructive)
    return Access(frozenset(see), frozenset(call), frozenset(destructive))


def parse(content: bytes, source: str) -> Policy:
    """Decode and validate a policy document; ``PolicyError`` says where it is wrong."""
    if len(content) > MAX_POLICY_BYTES:
        raise PolicyError(f"POLICY_FILE {source}: larger than {MAX_POLICY_BYTES} bytes")
    try:
        # YAML 1.1 is a superset of JSON, so one loader reads both forms.
        document = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise PolicyError(f"POLICY_FILE {source}: not valid YAML or JSON: {exc}") from None
    try:
        return msgspec.convert(document, Policy)
    except msgspec.ValidationError as exc:
        raise PolicyError(f"POLICY_FILE {source}: {exc}") from None


class PolicyStore:
    """The policy in force, re-read from ``path`` by ``run`` every ``interval`` seconds."""

    def __init__(self, path: str, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.policy = DEFAULT
        self._digest = ""
        if path:
            self.policy, self._digest = self._load()
            logger.info("policy loaded from %s: %d rules", path, len(self.policy.rules))
        observability.POLICY_LAST_RELOAD_SUCCESS.set(time.time())

    def access(self, principal: Principal) -> Access:
        return access_for(self.policy, principal)

    def _load(self) -> tuple[Policy, str]:
        try:
            content = Path(self.path).read_bytes()
        except OSError as exc:
            raise PolicyError(f"POLICY_FILE {self.path}: cannot read it: {exc.strerror or exc}") from None
        return parse(content, self.path), hashlib.sha256(content).hexdigest()

    def reload(self) -> bool:
        """Re-read the file; a valid change takes effect, an invalid file keeps the last good policy.

        Returns whether the policy changed. Any read of a valid file, changed or not, counts as a
        successful reload for ``registry_policy_last_reload_success_timestamp``, so its age
        measures how long the file has been broken.
        """
        try:
            policy, digest = self._load()
        except PolicyError as exc:
            observability.POLICY_RELOAD_ERRORS.inc()
            logger.error("policy reload failed, keeping the last good policy: %s", exc)
            return False
        observability.POLICY_LAST_RELOAD_SUCCESS.set(time.time())
        if digest == self._digest:
            return False
        self.policy, self._digest = policy, digest
        logger.info("policy reloaded from %s: %d rules", self.path, len(policy.rules))
        return True

    async def run(self) -> None:
        """Poll the file for the life of the app (nothing to do without one)."""
        while self.path:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.reload)
