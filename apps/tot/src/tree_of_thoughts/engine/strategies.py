"""Search strategies: which nodes to expand next. Rounds, budgets and scoring live in SearchRun."""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tree_of_thoughts.engine.params import Strategy
from tree_of_thoughts.engine.tree import SearchRun, TreeNode

S = TypeVar("S")


def _best_first(nodes: list[TreeNode[S]]) -> list[TreeNode[S]]:
    return sorted((n for n in nodes if n.expandable), key=lambda n: -n.rank)


async def bfs(run: SearchRun[S]) -> None:
    """Beam search: expand the whole frontier concurrently, keep the best `breadth` children."""
    frontier = [run.root]
    while not run.halted():
        if frontier[0].depth >= run.params.max_depth:
            run.stop("max_depth")
            return
        children = await run.expand(frontier)
        await run.end_round()
        if run.stop_reason is not None:
            return
        ranked = _best_first(children)
        for node in ranked[run.params.breadth :]:
            node.pruned = True
        frontier = ranked[: run.params.breadth]
        if not frontier:
            run.stop("exhausted")
            return


async def dfs(run: SearchRun[S]) -> None:
    """Depth-first: visit the best children first, prune those under the threshold, backtrack."""
    depth_cut = await _visit(run, run.root)
    if run.stop_reason is None:
        run.stop("max_depth" if depth_cut else "exhausted")


async def _visit(run: SearchRun[S], node: TreeNode[S]) -> bool:
    """Explore below `node`; returns whether max_depth cut off some branch."""
    if run.halted():
        return False
    if node.depth >= run.params.max_depth:
        return True
    children = await run.expand([node])
    await run.end_round()
    depth_cut = False
    for index, child in enumerate(_best_first(children)):
        if run.stop_reason is not None:
            break
        if index >= run.params.breadth or child.rank < run.params.value_threshold:
            child.pruned = True
            continue
        depth_cut = await _visit(run, child) or depth_cut
    return depth_cut


async def best_first(run: SearchRun[S]) -> None:
    """Global priority queue: each round expands the `breadth` best frontier nodes concurrently."""
    queue: list[tuple[float, int, TreeNode[S]]] = [(0.0, run.root.id, run.root)]
    depth_cut = False
    while queue and not run.halted():
        batch = [heapq.heappop(queue)[2] for _ in range(min(run.params.breadth, len(queue)))]
        children = await run.expand(batch)
        await run.end_round()
        for child in children:
            if not child.expandable:
                continue
            if child.depth >= run.params.max_depth:
                depth_cut = True
            else:
                heapq.heappush(queue, (-child.rank, child.id, child))
    if run.stop_reason is None:
        run.stop("max_depth" if depth_cut else "exhausted")


STRATEGIES: dict[Strategy, Callable[[SearchRun[Any]], Awaitable[None]]] = {
    "bfs": bfs,
    "dfs": dfs,
    "best_first": best_first,
}
