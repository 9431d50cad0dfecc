"""Hybrid search: HNSW vector candidates plus full-text candidates, fused into one calibrated score.

One SQL statement gathers candidates from both indexes with the filters applied inside each scan
(pgvector's iterative index scan keeps walking the HNSW graph until ``k`` rows pass the filters),
then computes both features for every candidate: the cosine similarity of the tool's vector and
``ts_rank_cd`` of its text (normalised to [0, 1) by PostgreSQL's ``rank/(rank+1)``).

The score is a logistic model over those two features, fitted once on the MetaTool dev split
(bench/retrieval.py --fit, docs/search.md): it estimates the probability that the tool is the one
the request needs. Its parameters are constants, never rescaled per query, so a score of 0.5 means
the same thing for every query and ``min_score`` is a usable threshold.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg

from tool_registry.embeddings import Vectors
from tool_registry.models import SearchHit, provenance

Mode = Literal["hybrid", "vector", "text"]


@dataclass(frozen=True)
class Calibration:
    """score = sigmoid(vector * cosine + text * text_rank + bias)."""

    vector: float
    text: float
    bias: float

    def score(self, cosine: float, text_rank: float) -> float:
        return 1.0 / (1.0 + math.exp(-(self.vector * cosine + self.text * text_rank + self.bias)))


# Fitted by `python bench/retrieval.py --fit` on half of the MetaTool dev split (all-MiniLM-L6-v2);
# see docs/search.md for the numbers on the other half. Other models have other cosine scales:
# refit before relying on min_score with them.
CALIBRATION: dict[Mode, Calibration] = {
    "hybrid": Calibration(vector=15.12, text=2.27, bias=-9.29),
    "vector": Calibration(vector=17.30, text=0.00, bias=-9.51),
    "text": Calibration(vector=0.00, text=8.52, bias=-6.75),
}
# Only what a hit shows: schemas and examples are large and a search never returns them.
HIT_COLUMNS = "t.name, t.title, t.description, t.category, t.tags, t.version, t.status, t.source, t.approved_digest"
# ts_rank_cd normalisation 32: rank / (rank + 1), a fixed map into [0, 1).
TEXT_RANK = "ts_rank_cd(t.search_text, q.tsq, 32)"
# Session settings of the search pool's connections, sent once in the start-up packet (asyncpg's
# ``server_settings``; they survive the pool's RESET ALL), so a search is one statement and one round trip
# instead of BEGIN, SET LOCAL, the query and COMMIT. They are harmless to the pool's other statements.
SERVER_SETTINGS = {
    # The HNSW candidate list: k is at most 100 (limit 50), so no search needs the iterative scan to fill its
    # k unfiltered. 100 rather than 40: recall@10 0.97 instead of 0.89 at 100k tools, for ~0.07 ms of
    # PostgreSQL CPU per search (docs/benchmarks-registry.md).
    "hnsw.ef_search": "100",
    # Keep walking the graph until k rows pass the filters, in roughly best-first order: we re-rank anyway.
    "hnsw.iterative_scan": "relaxed_order",
    # asyncpg prepares statements, and after five runs PostgreSQL may pick a generic plan that cannot see
    # the filters' values and sorts every vector exactly (20 ms at 10k tools).
    "plan_cache_mode": "force_custom_plan",
    # No parallel workers for a search: the exact scan of a category (below) took 20 ms of wall time but
    # ~45 ms of CPU with two workers, against 14 ms serial; under concurrency CPU is what runs out.
    "max_parallel_workers_per_gather": "0",
}
# A category of at most this many tools is searched exactly (every vector of the category, by the B-tree
# on category) instead of by the HNSW iterative scan. A category filter is the scan's worst case: when the
# query lies far from the category's vectors, it walks the graph until hnsw.max_scan_tuples (20,000)
# and may still return fewer than k rows. Measured at 100k tools, a 6,189-tool category: HNSW 48 ms
# (p90 122 ms, 15 of 20 rows), exact 14 ms (2.3 us per tool) and every row; at 10k, 4.7 against 2.1 ms.
# At 10,000 tools the exact scan costs ~23 ms, about what a wide HNSW walk costs, and larger categories
# are common enough for HNSW to find k of them early.
EXACT_SCAN_MAX_ROWS = 10_000
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    tags: Sequence[str] = ()
    # LIKE patterns of the names the caller may see (policy.Access.like_patterns); None: every name.
    names: Sequence[str] | None = None


@dataclass(frozen=True)
class Candidate:
    hit: SearchHit
    cosine: float
    text_rank: float


def text_query(query: str) -> str:
    """The request's words OR-ed together, in ``websearch_to_tsquery`` syntax.

    Requests are sentences ("can you find me a cheap flight"): AND-ing every word would match
    almost nothing, so any word may match and ts_rank_cd rewards the tools matching more of them.
    Punctuation is dropped so quotes and dashes never act as phrase or negation operators.
    """
    return " or ".join(_WORD.findall(query.lower())[:64])


def candidate_count(limit: int) -> int:
    """Rows gathered from each index: enough that the fused top ``limit`` rarely lies outside them."""
    return max(20, 2 * limit)


def _literal(text: str) -> str:
    # standard_conforming_strings is on in every supported PostgreSQL: doubling quotes suffices.
    return "'" + text.replace("'", "''") + "'"


# The policy's name filter sits inside each index scan like the others, so a caller who sees few
# tools still gets its top k (the HNSW iterative scan walks on until k visible rows are found).
_FILTERS = """t.status = 'active'
          AND ($3::text IS NULL OR t.category = $3)
          AND (cardinality($4::text[]) = 0 OR t.tags @> $4::text[])
          AND ($6::text[] IS NULL OR t.name LIKE ANY ($6::text[]))"""


@functools.lru_cache(maxsize=64)
def candidates_sql(mode: Mode, model: str | None, dimension: int, exact: bool = False) -> str:
    """The statement for ``mode``. The model name and dimension are literals, not parameters, so the
    planner can match the model's partial expression index (a parameter never proves a predicate).
    Cached: the few (mode, model) pairs in use are built once, not per request. ``exact`` orders the
    vector candidates by the full-precision distance, which the halfvec HNSW index cannot serve: the
    filters then pick the rows (``EXACT_SCAN_MAX_ROWS``).

    Parameters: $1 query vector, $2 text query, $3 category, $4 tags, $5 candidates per index,
    $6 LIKE patterns of the visible names (NULL: all).
    """
    vector = f"vector({dimension})"
    # The model's HNSW index is over this expression (indexer.prepare): 16-bit elements, for candidates only.
    half = f"halfvec({dimension})"
    cosine = "NULL::float8"
    parts = []
    if mode != "text" and model is not None:
        lit = _literal(model)
        parts.append(f"""
            SELECT e.tool_id FROM tool_embeddings e JOIN tools t ON t.id = e.tool_id
            WHERE e.model = {lit} AND {_FILTERS}
            ORDER BY {f"e.embedding <=> $1::{vector}" if exact else f"e.embedding::{half} <=> $1::{vector}::{half}"}
            LIMIT $5""")  # noqa: S608
        cosine = f"""(SELECT 1 - (e.embedding::{vector} <=> $1::{vector}) FROM tool_embeddings e
                     WHERE e.tool_id = t.id AND e.model = {lit})"""  # noqa: S608
    # Hybrid re-ranks the vector candidates with their text rank; full-text candidates are gathered
    # only when there is no vector side. An OR query over a large catalogue matches thousands of
    # tools, and ranking them all cost 25 ms at 10k tools against 0.6 ms for the HNSW scan, for a
    # quality gain the benchmark could not measure (docs/search.md).
    if mode == "text" or not parts:
        parts.append(f"""
            SELECT t.id AS tool_id FROM tools t, q
            WHERE t.search_text @@ websearch_to_tsquery('english', $2) AND {_FILTERS}
            ORDER BY {TEXT_RANK} DESC
            LIMIT $5""")  # noqa: S608
    union = " UNION ".join(f"({part})" for part in parts)
    return f"""
        -- ($1 is named in every mode so its type is known even when only full text runs.)
        WITH q AS (SELECT websearch_to_tsquery('english', $2) AS tsq, $1::vector AS v),
        candidates AS MATERIALIZED ({union})
        SELECT {HIT_COLUMNS}, {cosine} AS cosine, {TEXT_RANK} AS text_rank
        FROM candidates c JOIN tools t ON t.id = c.tool_id, q
    """  # noqa: S608 (literals are quoted by _literal, the dimension is an int)


async def candidates(
    conn: asyncpg.Connection,
    *,
    query: str,
    vector: Vectors | None,
    model: str | None,
    dimension: int,
    mode: Mode,
    filters: Filters,
    limit: int,
    exact: bool = False,
) -> list[Candidate]:
    """Candidates from the indexes ``mode`` uses, each with both features (NULLs become 0); ``exact``:
    the filters select few enough tools to rank all of them (``EXACT_SCAN_MAX_ROWS``).

    One statement outside any transaction: ``conn`` comes from a pool opened with ``SERVER_SETTINGS``.
    """
    k = candidate_count(limit)
    sql = candidates_sql(mode, model if vector is not None else None, dimension, exact)
    rows = await conn.fetch(
        sql,
        vector,
        text_query(query),
        filters.category,
        list(filters.tags),
        k,
        None if filters.names is None else list(filters.names),
    )
    return [
        Candidate(
            hit=SearchHit(
                name=row["name"],
                score=0.0,
                title=row["title"],
                description=row["description"],
                category=row["category"],
                tags=list(row["tags"]),
                version=row["version"],
                status=row["status"],
                source=row["source"],
                provenance=provenance(row["source"], row["approved_digest"]),
            ),
            cosine=float(row["cosine"] or 0.0),
            text_rank=float(row["text_rank"] or 0.0),
        )
        for row in rows
    ]


def fuse(found: Sequence[Candidate], mode: Mode, *, limit: int, min_score: float) -> list[SearchHit]:
    """Score every candidate with the mode's calibration, best first, at most ``limit``."""
    calibration = CALIBRATION[mode]
    scored = sorted(
        ((calibration.score(c.cosine, c.text_rank), c.hit.name, c.hit) for c in found),
        key=lambda item: (-item[0], item[1]),
    )
    results = []
    for score, _, hit in scored[:limit]:
        if score < min_score:
            break
        hit.score = round(score, 4)
        results.append(hit)
    return results
