"""Retrieval quality on the MetaTool dev split (199 tools, 4,122 labelled requests; MIT licence,
see datasets/metatool/LICENSE), through the registry's own search code and database.

    uv run python bench/retrieval.py [--fit]

Queries are split in two halves by a hash of their text: A (for fitting) and B (held out).
``--fit`` chooses the hybrid weights on A (the text/vector weight ratio that maximises MRR@10,
then a logistic fit of scale and bias, so scores are calibrated probabilities) and prints the
constants for ``search.CALIBRATION``; the report is always on B (and on all queries).

Zero-shot: tools carry their name and description only. With examples: up to 5 requests per tool
are taken from the split as the tool's ``examples`` and evaluated on the remaining requests.
The search is the production path (``search.candidates`` + ``search.fuse``) with query vectors
precomputed in one batch (the registry embeds the same text, "Which tool: " + query, per request).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import random
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
from _catalogue import REPO_ROOT, fresh_database, postgres, registry

from tool_registry import search
from tool_registry.embeddings import LOCAL_QUERY_PREFIX, LocalEmbedder
from tool_registry.models import ToolImport
from tool_registry.registry import Registry

DATA = REPO_ROOT / "datasets" / "metatool"
EXAMPLES_PER_TOOL = 5
SCHEMA = {"type": "object", "properties": {"request": {"type": "string"}}}


@dataclass
class Query:
    text: str
    tool: str
    held_out: bool  # half B


@dataclass
class Features:
    names: list[str]
    cosine: np.ndarray
    text: np.ndarray


def registry_name(name: str) -> str:
    """MetaTool names such as "PDF&URLTool" hold characters tool names may not."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def load() -> tuple[list[dict[str, str]], list[Query]]:
    tools = json.loads((DATA / "tools.json").read_text())
    with (DATA / "queries-dev.csv").open() as handle:
        queries = [
            Query(row["query"], registry_name(row["tool"]), hashlib.sha256(row["query"].encode()).digest()[0] % 2 == 1)
            for row in csv.DictReader(handle)
        ]
    return tools, queries


def query_vectors(embedder: LocalEmbedder, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts``, cached in the temp directory (embedding 8k requests takes ~2 min)."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"registry-bench-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.encode(texts)
    np.save(path, vectors)
    return vectors


def split_examples(queries: Sequence[Query]) -> tuple[dict[str, list[str]], list[Query]]:
    """Up to 5 requests per tool become examples (always leaving one to evaluate); the rest remain."""
    rng = random.Random(0)
    by_tool: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_tool.setdefault(q.tool, []).append(i)
    taken: set[int] = set()
    examples: dict[str, list[str]] = {}
    for tool, ids in by_tool.items():
        ids = ids[:]
        rng.shuffle(ids)
        chosen = ids[: min(EXAMPLES_PER_TOOL, len(ids) - 1)]
        taken.update(chosen)
        examples[tool] = [queries[i].text for i in chosen]
    return examples, [q for i, q in enumerate(queries) if i not in taken]


async def load_catalogue(service: Registry, tools: list[dict[str, str]], examples: dict[str, list[str]]) -> None:
    items = [
        msgspec.convert(
            {
                "name": registry_name(t["name"]),
                "description": t["description"],
                "input_schema": SCHEMA,
                "examples": [e[:512] for e in examples.get(registry_name(t["name"]), [])],
            },
            ToolImport,
        )
        for t in tools
    ]
    await service.import_tools(items, "bench")
    while await service.indexer.catch_up():
        pass


async def features(
    service: Registry, queries: Sequence[Query], vectors: np.ndarray, mode: search.Mode = "hybrid"
) -> list[Features]:
    """Candidates with both features, exactly as production gathers them for ``mode`` and limit 10."""
    model = await service.indexer.search_model()
    assert model is not None
    out = []
    async with service.primary.connection() as conn:
        for query, vector in zip(queries, vectors, strict=True):
            found = await search.candidates(
                conn,
                query=query.text,
                vector=vector,
                model=model.model,
                dimension=model.dimension,
                mode="hybrid",
                filters=search.Filters(),
                limit=10,
            )
            out.append(
                Features(
                    [c.hit.name for c in found],
                    np.array([c.cosine for c in found]),
                    np.array([c.text_rank for c in found]),
                )
            )
    return out


def metrics(ranked: Sequence[Sequence[str]], queries: Sequence[Query]) -> dict[str, float]:
    r1 = r5 = mrr = 0.0
    for names, query in zip(ranked, queries, strict=True):
        top = list(names[:10])
        if query.tool in top:
            rank = top.index(query.tool) + 1
            r1 += rank == 1
            r5 += rank <= 5
            mrr += 1 / rank
    n = len(queries)
    return {"R@1": round(r1 / n, 3), "R@5": round(r5 / n, 3), "MRR@10": round(mrr / n, 3)}


def rank_linear(feats: Sequence[Features], w_vec: float, w_text: float, *, text_only: bool = False) -> list[list[str]]:
    ranked = []
    for f in feats:
        keep = f.text > 0 if text_only else np.ones(len(f.names), dtype=bool)
        z = w_vec * f.cosine + w_text * f.text
        order = [i for i in np.argsort(-z, kind="stable") if keep[i]]
        ranked.append([f.names[i] for i in order])
    return ranked


def union(a: Sequence[Features], b: Sequence[Features]) -> list[Features]:
    """Both candidate lists of each query (the full-text side gets the vector feature too)."""
    out = []
    for fa, fb in zip(a, b, strict=True):
        extra = [i for i, name in enumerate(fb.names) if name not in fa.names]
        out.append(
            Features(
                fa.names + [fb.names[i] for i in extra],
                np.concatenate([fa.cosine, fb.cosine[extra]]),
                np.concatenate([fa.text, fb.text[extra]]),
            )
        )
    return out


def rank_rrf(feats: Sequence[Features], k: int = 60) -> list[list[str]]:
    """Reciprocal rank fusion over the same candidates (the baseline the brief warns about)."""
    ranked = []
    for f in feats:
        score = np.zeros(len(f.names))
        for column in (f.cosine, f.text):
            for rank, i in enumerate(np.argsort(-column, kind="stable")):
                if column[i] > 0:
                    score[i] += 1 / (k + rank + 1)
        ranked.append([f.names[i] for i in np.argsort(-score, kind="stable")])
    return ranked


def fit_logistic(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """1-D logistic regression (Newton's method): P(y=1) = sigmoid(a*z + b)."""
    a, b = 1.0, 0.0
    x = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ np.array([a, b]))))
        gradient = x.T @ (p - y)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def flatten(feats: Sequence[Features], queries: Sequence[Query]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cos = np.concatenate([f.cosine for f in feats])
    text = np.concatenate([f.text for f in feats])
    labels = np.concatenate(
        [np.array([n == q.tool for n in f.names], dtype=float) for f, q in zip(feats, queries, strict=True)]
    )
    return cos, text, labels


def fit(feats: Sequence[Features], queries: Sequence[Query]) -> dict[str, tuple[float, float, float]]:
    """On half A: best text/vector ratio by MRR@10, then calibrate each mode by logistic regression."""
    best_ratio, best_mrr = 0.0, -1.0
    for ratio in np.arange(0, 2.01, 0.05):
        mrr = metrics(rank_linear(feats, 1.0, float(ratio)), queries)["MRR@10"]
        if mrr > best_mrr:
            best_ratio, best_mrr = float(ratio), mrr
    cos, text, y = flatten(feats, queries)
    a, b = fit_logistic(cos + best_ratio * text, y)
    av, bv = fit_logistic(cos, y)
    has_text = text > 0
    at, bt = fit_logistic(text[has_text], y[has_text])
    print(f"fit on half A: text/vector ratio {best_ratio:.2f} (MRR@10 {best_mrr})")
    return {"hybrid": (a, a * best_ratio, b), "vector": (av, 0.0, bv), "text": (0.0, at, bt)}


def calibration_table(feats: Sequence[Features], queries: Sequence[Query], mode: search.Mode) -> list[str]:
    """Reliability: among results scored in each band, how many were the right tool."""
    cal = search.CALIBRATION[mode]
    cos, text, y = flatten(feats, queries)
    scores = np.array([cal.score(c, t) for c, t in zip(cos, text, strict=True)])
    rows = []
    for lo in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9):
        hi = {0.0: 0.1, 0.1: 0.3, 0.3: 0.5, 0.5: 0.7, 0.7: 0.9, 0.9: 1.01}[lo]
        band = (scores >= lo) & (scores < hi)
        if band.any():
            rows.append(f"  score [{lo:.1f}, {min(hi, 1):.1f}): {band.sum():6d} results, {y[band].mean():.2f} correct")
    return rows


def report(
    label: str, feats: Sequence[Features], text: Sequence[Features], queries: Sequence[Query]
) -> list[dict[str, object]]:
    hybrid = search.CALIBRATION["hybrid"]
    both = union(feats, text)
    results = {
        "hybrid (production)": metrics(rank_linear(feats, hybrid.vector, hybrid.text), queries),
        "vector only": metrics(rank_linear(feats, 1.0, 0.0), queries),
        "text only": metrics(rank_linear(text, 0.0, 1.0, text_only=True), queries),
        "hybrid over both lists": metrics(rank_linear(both, hybrid.vector, hybrid.text), queries),
        "RRF k=60 (baseline)": metrics(rank_rrf(both), queries),
    }
    print(f"\n{label} ({len(queries)} requests)")
    for name, values in results.items():
        print(f"  {name:22s} " + "  ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return [
        {"setting": label, "mode": name, **{k: round(v, 3) for k, v in values.items()}}
        for name, values in results.items()
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", action="store_true", help="fit the calibration on half A and print it")
    parser.add_argument("--json", type=Path, help="also write the held-out rows here (bench/report.py reads them)")
    args = parser.parse_args()
    table: list[dict[str, object]] = []
    tools, queries = load()
    embedder = LocalEmbedder()
    started = time.perf_counter()
    prefixed = query_vectors(embedder, [LOCAL_QUERY_PREFIX + q.text for q in queries])
    plain = query_vectors(embedder, [q.text for q in queries])
    print(f"embedded {2 * len(queries)} requests in {time.perf_counter() - started:.0f} s")
    index = {id(q): i for i, q in enumerate(queries)}
    with postgres() as server:
        for label, examples, evaluated in (
            ("zero-shot", {}, queries),
            (f"with up to {EXAMPLES_PER_TOOL} examples per tool", *split_examples(queries)),
        ):
            async with registry(await fresh_database(server)) as service:
                await load_catalogue(service, tools, examples)
                rows = [index[id(q)] for q in evaluated]
                feats = await features(service, evaluated, prefixed[rows])
                text = await features(service, evaluated, prefixed[rows], "text")
                half_a = [i for i, q in enumerate(evaluated) if not q.held_out]
                half_b = [i for i, q in enumerate(evaluated) if q.held_out]
                if args.fit and not examples:
                    both = union(feats, text)
                    for mode, (v, t, b) in fit([both[i] for i in half_a], [evaluated[i] for i in half_a]).items():
                        print(f'    "{mode}": Calibration(vector={v:.2f}, text={t:.2f}, bias={b:.2f}),')
                table += report(
                    f"{label}, held-out half B",
                    [feats[i] for i in half_b],
                    [text[i] for i in half_b],
                    [evaluated[i] for i in half_b],
                )
                report(f"{label}, all", feats, text, evaluated)
                if not examples:
                    unprefixed = await features(service, evaluated, plain[rows])
                    report(f"{label}, all, WITHOUT the query prefix", unprefixed, text, evaluated)
                for mode in ("hybrid", "vector"):
                    print(f"  calibration of {mode} scores ({label}, all):")
                    print("\n".join(calibration_table(feats, evaluated, mode)))
    if args.json:
        description = "Retrieval quality on the MetaTool dev split (held-out half B), by ranking mode"
        args.json.write_text(json.dumps({"bench": "retrieval", "description": description, "rows": table}))


if __name__ == "__main__":
    asyncio.run(main())
