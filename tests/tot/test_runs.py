"""The runs layer below HTTP: both stores behave alike, owners are isolated, runs expire, lost workers show."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from xml.etree import ElementTree

import asyncpg
import pytest
from prometheus_client import REGISTRY

from platform_common.db import Database, migrate
from tree_of_thoughts.config import TotSettings
from tree_of_thoughts.engine import Node
from tree_of_thoughts.runs import MemoryRunStore, PostgresRunStore, RunRequest, RunService, RunStore
from tree_of_thoughts.runs.models import InvalidCursor, Run, RunNotFound, RunOutcome, RunParams, TooManyRuns
from tree_of_thoughts.runs.render import NODES_PER_DEPTH, render_svg
from tree_of_thoughts.runs.store import now

GAME24 = RunRequest(task="game24", problem="4 9 10 13")
PARAMS = RunParams(
    task="game24",
    problem="4 9 10 13",
    strategy="bfs",
    breadth=5,
    max_depth=5,
    evaluator="hybrid",
    generator=None,
    max_nodes=100,
    max_llm_calls=10,
    max_tokens=100,
    timeout_seconds=10,
)


@pytest.fixture(params=["memory", "postgres"])
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[RunStore]:
    if request.param == "memory":
        yield MemoryRunStore()
        return
    await migrate(database_url, "tree_of_thoughts.migrations", table="tot_migrations")
    database = Database(database_url)
    yield PostgresRunStore(database)
    await database.close()


def service_for(store: RunStore, **settings: object) -> RunService:
    return RunService(store, TotSettings.from_env({}, auth_mode="none", **settings), llm=None)


async def finished(service: RunService, run_id: str, owner: str) -> Run:
    for _ in range(200):
        run = await service.get(run_id, owner)
        if run.status not in ("queued", "running"):
            return run
        await asyncio.sleep(0.02)
    raise AssertionError("run did not finish")


async def test_a_caller_sees_only_its_own_runs(store: RunStore) -> None:
    service = service_for(store)
    async with service.running():
        run = await service.submit(GAME24, "alice")
        assert (await finished(service, run.id, "alice")).solved
        with pytest.raises(RunNotFound):
            await service.get(run.id, "bob")
        with pytest.raises(RunNotFound):
            await service.cancel(run.id, "bob")
        assert (await service.list("bob", status=None, limit=10, cursor=None)).items == []
        assert [r.id for r in (await service.list("alice", status=None, limit=10, cursor=None)).items] == [run.id]


async def test_finished_runs_expire_after_the_ttl(store: RunStore) -> None:
    service = service_for(store, run_ttl_hours=0.5 / 3600)  # half a second
    async with service.running():
        done = await service.submit(GAME24, "alice")
        await finished(service, done.id, "alice")
        waiting = await store.create("00000000-0000-4000-8000-000000000001", "alice", PARAMS, max_active=10)
        assert waiting is not None
        await asyncio.sleep(0.6)
        assert await service.sweep() == 1
        with pytest.raises(RunNotFound):
            await service.get(done.id, "alice")
        # Unfinished runs never expire.
        assert (await service.get(waiting.id, "alice")).status == "queued"


async def test_active_runs_per_owner_are_capped(store: RunStore) -> None:
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
    assert await store.create(ids[0], "alice", PARAMS, max_active=2) is not None
    assert await store.create(ids[1], "alice", PARAMS, max_active=2) is not None
    assert await store.create(ids[2], "alice", PARAMS, max_active=2) is None
    assert await store.create(ids[2], "bob", PARAMS, max_active=2) is not None
    service = service_for(store, max_active_runs_per_owner=2)
    with pytest.raises(TooManyRuns):
        await service.submit(GAME24, "alice")


async def test_listing_pages_newest_first_and_filters_by_status(store: RunStore) -> None:
    ids = [f"00000000-0000-4000-8000-00000000001{i}" for i in range(5)]
    for run_id in ids:
        await store.create(run_id, "alice", PARAMS, max_active=10)
    await store.request_cancel(ids[0], "alice")
    await store.finish(ids[0], RunOutcome(status="cancelled", stop_reason="cancelled"))
    service = service_for(store)
    seen: list[str] = []
    cursor = None
    while True:
        page = await service.list("alice", status=None, limit=2, cursor=cursor)
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]
    cancelled = await service.list("alice", status="cancelled", limit=10, cursor=None)
    assert [r.id for r in cancelled.items] == [ids[0]]
    with pytest.raises(InvalidCursor):
        await service.list("alice", status=None, limit=2, cursor="not-a-cursor")


async def test_a_run_whose_worker_died_is_reported_failed(database_url: str) -> None:
    await migrate(database_url, "tree_of_thoughts.migrations", table="tot_migrations")
    database = Database(database_url)
    store = PostgresRunStore(database)
    run = await store.create("00000000-0000-4000-8000-000000000099", "alice", PARAMS, max_active=1)
    assert run is not None
    await store.mark_running(run.id)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE tot_runs SET heartbeat_at = now() - interval '2 minutes'")
    finally:
        await conn.close()
    lost = await store.get(run.id, "alice")
    assert lost is not None
    assert (lost.status, lost.stop_reason) == ("failed", "worker_lost")
    assert lost.error and "start the run again" in lost.error
    # A lost run no longer counts against the owner's cap, and the sweep writes the verdict down.
    assert await store.create("00000000-0000-4000-8000-000000000098", "alice", PARAMS, max_active=1) is not None
    await store.sweep(finished_before=now() - timedelta(hours=1))
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.fetchval("SELECT status FROM tot_runs WHERE id = $1", run.id)
    finally:
        await conn.close()
    assert status == "failed"
    await database.close()


def _run_with(nodes: list[Node]) -> Run:
    return Run(
        id="x",
        owner="o",
        params=PARAMS,
        status="succeeded",
        created_at=now(),
        tree=nodes,
        stop_reason="solved",
        best_node_id=nodes[-1].id,
    )


def test_svg_escapes_text_and_marks_the_best_path() -> None:
    nodes = [
        Node(id=0, parent=None, depth=0, state='<root & "quotes">', thought="", on_best_path=True),
        Node(
            id=1,
            parent=0,
            depth=1,
            state="s",
            thought="</text><script>alert(1)</script>\x07",
            score=0.9,
            on_best_path=True,
        ),
        Node(id=2, parent=0, depth=1, state="t", thought="pruned one", score=0.1, pruned=True),
    ]
    svg = render_svg(_run_with(nodes))
    root = ElementTree.fromstring(svg)  # noqa: S314 (our own output)
    assert "<script>" not in svg
    classes = [g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert classes.count("node best") == 2 and "node pruned" in classes


def test_svg_of_a_huge_tree_shows_the_best_path_and_the_top_nodes_per_depth() -> None:
    nodes = [Node(id=0, parent=None, depth=0, state="root", thought="", on_best_path=True)]
    nodes += [Node(id=i, parent=0, depth=1, state=f"s{i}", thought=f"t{i}", score=i / 1000) for i in range(1, 501)]
    nodes[1].on_best_path = True
    svg = render_svg(_run_with(nodes))
    root = ElementTree.fromstring(svg)  # noqa: S314 (our own output)
    shown = [g for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert len(shown) == 1 + NODES_PER_DEPTH
    assert any(g.get("data-node-id") == "1" for g in shown)  # the best path, though it scores lowest
    assert any(g.get("data-node-id") == "500" for g in shown)  # the top-scored node
    assert f"{len(nodes) - len(shown)} omitted" in svg


async def test_finished_runs_are_counted_in_the_metrics() -> None:
    labels = {"strategy": "bfs", "task": "game24"}

    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("tot_runs_total", {**labels, "outcome": outcome}) or 0.0

    before_solved, before_unsolved = count("solved"), count("unsolved")
    nodes_before = REGISTRY.get_sample_value("tot_nodes_expanded_total") or 0.0
    service = service_for(MemoryRunStore())
    async with service.running():
        for problem in ("4 9 10 13", "1 1 1 1"):
            run = await service.submit(RunRequest(task="game24", problem=problem), "alice")
            await finished(service, run.id, "alice")
        assert REGISTRY.get_sample_value("tot_runs_active") == 0
    assert (count("solved"), count("unsolved")) == (before_solved + 1, before_unsolved + 1)
    assert (REGISTRY.get_sample_value("tot_nodes_expanded_total") or 0.0) > nodes_before
