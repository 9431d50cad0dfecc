"""Draw a run's tree as a standalone SVG a person can read in a browser.

One row per depth, the root at the top; each box shows the thought and its score, the full
thought and state are in the box's tooltip. The chosen path is drawn thick and orange (class
``best``), pruned nodes grey. Trees can hold thousands of nodes, so each depth shows the nodes of
the best path plus the best-scored others (children of shown nodes only), and the header says how
many were left out. All text is XML-escaped; characters XML cannot carry are dropped.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from tree_of_thoughts.engine import Node
from tree_of_thoughts.runs.models import Run

NODES_PER_DEPTH = 12
_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _MARGIN, _HEADER = 180, 44, 14, 36, 20, 64
_LABEL_CHARS = 30
_TOOLTIP_CHARS = 2_000
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

_STYLE = """
text { font: 12px sans-serif; fill: #1f2933; }
.header { font-size: 14px; }
.note { fill: #52606d; }
.node rect { fill: #f0f4f8; stroke: #829ab1; stroke-width: 1; rx: 6; }
.node.best rect { fill: #fff4e6; stroke: #d9480f; stroke-width: 3; }
.node.pruned rect { fill: #e4e7eb; stroke: #bcccdc; stroke-dasharray: 4 3; }
.node.pruned text { fill: #9aa5b1; }
.edge { stroke: #bcccdc; stroke-width: 1; }
.edge.best { stroke: #d9480f; stroke-width: 3; }
"""


def _text(value: str, limit: int) -> str:
    clean = _NOT_XML.sub("", value)
    if len(clean) > limit:
        clean = clean[: limit - 1] + "\u2026"
    return escape(clean, {'"': "&quot;"})


def select_nodes(nodes: list[Node], per_depth: int = NODES_PER_DEPTH) -> list[Node]:
    """The nodes worth drawing: per depth, the best path plus the top-scored children of drawn nodes."""
    kept: list[Node] = []
    kept_ids: set[int] = set()
    for depth in sorted({n.depth for n in nodes}):
        candidates = [n for n in nodes if n.depth == depth and (n.parent is None or n.parent in kept_ids)]
        best = [n for n in candidates if n.on_best_path]
        others = sorted(
            (n for n in candidates if not n.on_best_path),
            key=lambda n: (-(n.score if n.score is not None else -1.0), n.id),
        )
        chosen = best + others[: max(0, per_depth - len(best))]
        kept.extend(chosen)
        kept_ids.update(n.id for n in chosen)
    return kept


def _layout(nodes: list[Node]) -> dict[int, tuple[float, float]]:
    """Top-left corner of each box: rows by depth, siblings together in their parent's order."""
    rows: dict[int, list[Node]] = {}
    for node in nodes:
        rows.setdefault(node.depth, []).append(node)
    order: dict[int, int] = {}
    for depth in sorted(rows):
        rows[depth].sort(key=lambda n: (order.get(n.parent, 0) if n.parent is not None else 0, n.id))
        order.update({n.id: i for i, n in enumerate(rows[depth])})
    widest = max(len(row) for row in rows.values())
    positions: dict[int, tuple[float, float]] = {}
    for depth, row in rows.items():
        offset = (widest - len(row)) * (_BOX_W + _GAP_X) / 2
        for i, node in enumerate(row):
            positions[node.id] = (_MARGIN + offset + i * (_BOX_W + _GAP_X), _HEADER + depth * (_BOX_H + _GAP_Y))
    return positions


def render_svg(run: Run) -> str:
    """The SVG document for ``run`` (loaded with its tree)."""
    nodes = run.tree or []
    shown = select_nodes(nodes)
    positions = _layout(shown) if shown else {}
    width = max([720.0, *(x + _BOX_W + _MARGIN for x, _ in positions.values())])
    height = max([_HEADER + 40.0, *(y + _BOX_H + _MARGIN for _, y in positions.values())])
    title = f"{run.params.task}: {run.params.problem}"
    if not nodes:
        summary = f"No tree yet: the run is {run.status}; the tree is drawn when it ends."
    else:
        omitted = len(nodes) - len(shown)
        summary = f"{run.status}, stop reason {run.stop_reason}; {len(shown)} of {len(nodes)} nodes shown"
        if omitted:
            summary += f", {omitted} omitted (best path plus the top {NODES_PER_DEPTH} per depth)"
        summary += ". Thick orange: best path; grey: pruned."
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">',
        f"<title>{_text(title, 200)}</title>",
        f"<style>{_STYLE}</style>",
        f'<text class="header" x="{_MARGIN}" y="22">{_text(title, 120)}</text>',
        f'<text class="note" x="{_MARGIN}" y="42">{_text(summary, 300)}</text>',
    ]
    parts.extend(_edge(node, positions) for node in shown if node.parent is not None)
    parts.extend(_box(node, positions[node.id]) for node in shown)
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(node: Node, positions: dict[int, tuple[float, float]]) -> str:
    assert node.parent is not None
    px, py = positions[node.parent]
    x, y = positions[node.id]
    css = "edge best" if node.on_best_path else "edge"
    return (
        f'<line class="{css}" x1="{px + _BOX_W / 2:.1f}" y1="{py + _BOX_H:.1f}" '
        f'x2="{x + _BOX_W / 2:.1f}" y2="{y:.1f}"/>'
    )


def _box(node: Node, position: tuple[float, float]) -> str:
    x, y = position
    css = "node" + (" best" if node.on_best_path else "") + (" pruned" if node.pruned else "")
    label = node.thought if node.parent is not None else f"problem: {node.state}"
    score = "score -" if node.score is None else f"score {node.score:.2f}"
    tooltip = f"#{node.id} {node.thought}\n{node.state}" if node.parent is not None else node.state
    return (
        f'<g class="{css}" data-node-id="{node.id}"><title>{_text(tooltip, _TOOLTIP_CHARS)}</title>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{_BOX_W}" height="{_BOX_H}"/>'
        f'<text x="{x + 8:.1f}" y="{y + 18:.1f}">{_text(label, _LABEL_CHARS)}</text>'
        f'<text x="{x + 8:.1f}" y="{y + 35:.1f}">{score}</text></g>'
    )
