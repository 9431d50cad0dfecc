"""Run every benchmark in bench/, repeat each, and write docs/benchmarks.md with plots in docs/plots/.

    uv run python bench/report.py [--repeat 3] [--only game24 tokens] [--quick]

The JSON contract a benchmark follows to be tabulated and plotted (stdout is kept either way):
it accepts ``--json PATH`` and writes ``{"bench": NAME, "description": TEXT, "rows": [ROW, ...]}``
where each ROW is a flat object of column -> number or string, the same columns and row order on
every run. The report takes the median of each numeric cell over the repeats (strings such as
"45.0%" or "1.23 s" count as numbers). A script without ``--json`` in its source is run once and
its stdout is included verbatim. Plots look for these columns (first match wins, case-insensitive):

- latency against catalogue size: a size column (``catalogue``, ``size`` or ``tools``) and ``p50``/``p99``
- throughput against concurrency: ``concurrency`` and a rate (``req/s``, ``rps``, ``throughput``)
- throughput against worker processes: ``workers`` and a rate, one line per ``concurrency`` (such a
  table is not used for the plot against concurrency)
- ToT wall time against LLM latency: ``L (s)``, ``wall (s)`` and ``ideal (2r+1)L (s)``
- retrieval quality by mode: ``mode`` and ``R@1``/``R@5``/``MRR@10``

Where a table has a ``queries`` column (cached/uncached) the latency and throughput plots take its
cached rows, and the latency plot only its REST rows when it has an ``interface`` column (the tables
keep every row).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO_ROOT / "bench"
DOCS = REPO_ROOT / "docs"
PLOTS = DOCS / "plots"
# Smaller arguments for --quick (a smoke run of the report itself).
QUICK_ARGS = {
    "game24": ["--last", "920"],
    "tokens": ["--seconds", "1"],
    "search_latency": ["--sizes", "1000,10000", "--seconds", "2", "--warmup", "1"],
    "workers": ["--tools", "2000", "--workers", "1,2", "--seconds", "2", "--warmup", "1"],
    "bulk_import": ["--tools", "2000"],
    "ratelimit": ["--seconds", "1"],
    "index_recall": ["--tools", "5000", "--queries", "50"],
    "query_embedding": ["--queries", "200"],
    "http_protocol": ["--seconds", "2"],
    "search_profile": ["--tools", "2000", "--seconds", "5"],
}
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(%|ms|s|x)?\s*$")


def machine() -> dict[str, str]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")),
            cpu,
        )
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "uname -a": subprocess.run(["uname", "-a"], capture_output=True, text=True, check=False).stdout.strip(),
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "Python": platform.python_version(),
    }


def benches(only: list[str] | None) -> list[Path]:
    scripts = sorted(p for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_") and p.name != "report.py")
    return [p for p in scripts if not only or p.stem in only]


def run_once(script: Path, extra: list[str], json_out: Path | None) -> tuple[dict[str, Any] | None, str, float]:
    command = [sys.executable, str(script), *extra]
    if json_out is not None:
        command += ["--json", str(json_out)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"{script.name} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    data = json.loads(json_out.read_text()) if json_out is not None and json_out.exists() else None
    return data, result.stdout, elapsed


def _parse(value: Any) -> tuple[float, str] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value), ""
    if isinstance(value, str) and (match := _NUMBER.match(value)):
        return float(match.group(1)), match.group(2) or ""
    return None


def median_rows(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Cell-wise medians over repeated runs (non-numeric cells are taken from the first run)."""
    merged: list[dict[str, Any]] = []
    for index, row in enumerate(runs[0]):
        out: dict[str, Any] = {}
        for key, value in row.items():
            parsed = [_parse(run[index].get(key)) for run in runs if index < len(run)]
            if all(p is not None for p in parsed) and parsed:
                numbers = [p[0] for p in parsed if p is not None]
                med = statistics.median(numbers)
                decimals = _decimals(value)
                if isinstance(value, str):  # keep the cell's own format ("45.0%", "1.23 s")
                    out[key] = re.sub(r"-?\d+(?:\.\d+)?", f"{med:.{decimals}f}", value, count=1)
                elif all(isinstance(run[index].get(key), int) for run in runs):
                    out[key] = round(med) if med == int(med) else med
                else:
                    out[key] = round(med, max(decimals, 3))
            else:
                out[key] = value
        merged.append(out)
    return merged


def _decimals(value: Any) -> int:
    text = str(value)
    digits = re.search(r"\.(\d+)", text)
    return len(digits.group(1)) if digits else 0


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no rows_\n"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(row.get(h, "")) for h in headers) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _column(rows: list[dict[str, Any]], *names: str) -> str | None:
    for name in names:
        for key in rows[0]:
            if name.lower() in key.lower():
                return key
    return None


def _values(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [p[0] if (p := _parse(row.get(key))) else float("nan") for row in rows]


def plots(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """PNG per plot kind that the data allows; returns kind -> relative path or the reason it is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    tables = [(name, r["rows"]) for name, r in results.items() if r.get("rows")]

    def save(fig: Any, name: str) -> str:
        path = PLOTS / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return f"plots/{name}"

    for name, all_rows in tables:
        rows = _where(all_rows, queries="cached")
        # Exactly "p50": index_recall's "statement p50 ms" at one size is not a latency curve.
        size, p50 = _column(rows, "catalogue", "size", "tools"), next((k for k in rows[0] if k.lower() == "p50"), None)
        if size and p50 and "latency_vs_catalogue" not in made:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for label, series in _series(_where(rows, interface="REST"), "interface", "concurrency").items():
                for key in [k for k in rows[0] if k.lower() in ("p50", "p99")]:
                    style = "-" if key.lower() == "p50" else "--"
                    ax.plot(_values(series, size), _values(series, key), style, marker="o", label=f"{label} {key}")
            ax.set(xscale="log", yscale="log", xlabel=size, ylabel="latency (ms)")
            ax.set_title(f"Search latency vs catalogue size ({name}{', cached' if 'queries' in rows[0] else ''})")
            ax.legend()
            made["latency_vs_catalogue"] = save(fig, "latency_vs_catalogue.png")
        conc, rate = _column(rows, "concurrency"), _column(rows, "req/s", "rps", "throughput")
        workers = next((key for key in rows[0] if key.lower() == "workers"), None)
        if workers and rate and "throughput_vs_workers" not in made:
            fig, ax = plt.subplots(figsize=(6, 4))
            for label, series in _series(rows, "concurrency").items():
                ax.plot(_values(series, workers), _values(series, rate), marker="o", label=label)
            ax.set_xticks(sorted({v for v in _values(rows, workers) if v == v}))
            ax.set(xlabel="worker processes", ylabel=rate, title=f"Throughput vs workers ({name})")
            ax.set_ylim(bottom=0)
            ax.legend(fontsize="small")
            made["throughput_vs_workers"] = save(fig, "throughput_vs_workers.png")
        if conc and rate and not workers and "throughput_vs_concurrency" not in made:
            fig, ax = plt.subplots(figsize=(6, 4))
            for label, series in _series(rows, "tools", "interface").items():
                ax.plot(_values(series, conc), _values(series, rate), marker="o", label=label)
            cached = ", cached" if "queries" in rows[0] else ""
            ax.set(xlabel=conc, ylabel=rate, title=f"Throughput vs concurrency ({name}{cached})")
            ax.legend(fontsize="small")
            made["throughput_vs_concurrency"] = save(fig, "throughput_vs_concurrency.png")
        latency, wall, ideal = _column(rows, "L (s)"), _column(rows, "wall (s)"), _column(rows, "ideal")
        if latency and wall and "tot_wall_vs_llm_latency" not in made:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(_values(rows, latency), _values(rows, wall), marker="o", label="measured wall time")
            if ideal:
                ax.plot(_values(rows, latency), _values(rows, ideal), linestyle="--", label="ideal (2r+1)L")
            seq = _column(rows, "sequential")
            if seq:
                ax.plot(_values(rows, latency), _values(rows, seq), linestyle=":", label="calls made one by one")
            ax.set(xlabel="LLM latency per call (s)", ylabel="run wall time (s)", title="ToT wall time vs LLM latency")
            ax.legend()
            made["tot_wall_vs_llm_latency"] = save(fig, "tot_wall_vs_llm_latency.png")
        mode, r1 = _column(rows, "mode"), _column(rows, "R@1", "recall@1")
        if mode and r1 and "retrieval_by_mode" not in made:
            setting = _column(rows, "setting")
            if setting:  # one group of bars per plot: the first setting (e.g. zero-shot)
                rows = [row for row in rows if row[setting] == rows[0][setting]]
            metrics = [k for k in rows[0] if re.search(r"(r@|recall@|mrr)", k.lower())]
            fig, ax = plt.subplots(figsize=(7, 4))
            width = 0.8 / max(len(metrics), 1)
            labels = [str(row[mode]) for row in rows]
            for i, key in enumerate(metrics):
                ax.bar([x + i * width for x in range(len(rows))], _values(rows, key), width, label=key)
            ax.set_xticks([x + width * (len(metrics) - 1) / 2 for x in range(len(rows))], labels, rotation=20)
            subtitle = f", {rows[0][setting]}" if setting else ""
            ax.set(ylim=(0, 1), title=f"Retrieval quality by mode ({name}{subtitle})")
            ax.legend()
            made["retrieval_by_mode"] = save(fig, "retrieval_by_mode.png")
    return made


def _where(rows: list[dict[str, Any]], **equal: str) -> list[dict[str, Any]]:
    """The rows whose columns (those present) have the given values; all rows if none would be left."""
    kept = [row for row in rows if all(str(row.get(k, v)) == v for k, v in equal.items())]
    return kept or rows


def _series(rows: list[dict[str, Any]], *keys: str) -> dict[str, list[dict[str, Any]]]:
    """Rows split into plot lines by the given columns (those present), e.g. interface and concurrency."""
    present = [k for k in keys if k in rows[0]]
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        label = " ".join(f"{row[k]}" if k == "interface" else f"{k} {row[k]}" for k in present) or "all"
        series.setdefault(label, []).append(row)
    return series


PLOT_TITLES = {
    "latency_vs_catalogue": "Search latency against catalogue size",
    "throughput_vs_concurrency": "Throughput against concurrency",
    "throughput_vs_workers": "Throughput against worker processes",
    "tot_wall_vs_llm_latency": "ToT wall time against LLM latency",
    "retrieval_by_mode": "Retrieval quality by mode",
}


def write_report(results: dict[str, dict[str, Any]], made: dict[str, str], repeat: int, quick: bool) -> str:
    info = machine()
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/report.py`); do not edit by hand. Every benchmark in `bench/` runs "
        f"{repeat} time(s); numeric cells are medians over the runs."
        + (" **Quick mode** (smaller inputs): not the reference numbers." if quick else ""),
        "",
        "## Machine",
        "",
        *[f"- {key}: `{value}`" for key, value in info.items()],
        "",
        "## Plots",
        "",
    ]
    for kind, title in PLOT_TITLES.items():
        if kind in made:
            out += [f"### {title}", "", f"![{title}]({made[kind]})", ""]
        else:
            out += [f"### {title}", "", "_Not plotted: no benchmark reported these columns yet (see below)._", ""]
    out += ["## Results", ""]
    for name, result in results.items():
        out += [f"### {name}", ""]
        if result.get("error"):
            out += ["Failed:", "", "```", result["error"][-2000:], "```", ""]
            continue
        if result.get("description"):
            out += [result["description"], ""]
        out += [f"Wall time per run: {', '.join(f'{s:.1f} s' for s in result['seconds'])}.", ""]
        if result.get("rows"):
            out += [markdown_table(result["rows"])]
        else:
            out += [
                "This script does not write the JSON contract yet (`--json PATH`, see bench/report.py); "
                "its output, from one run:",
                "",
                "```",
                result["stdout"].strip()[-4000:],
                "```",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per benchmark (medians are reported)")
    parser.add_argument("--only", nargs="*", help="benchmark names (file stems) to run")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--output", type=Path, default=DOCS / "benchmarks.md")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for script in benches(args.only):
        name = script.stem
        supports_json = "--json" in script.read_text()
        extra = QUICK_ARGS.get(name, []) if args.quick else []
        runs, seconds, stdout, error = [], [], "", ""
        print(f"== {name}", flush=True)
        for _ in range(args.repeat if supports_json else 1):
            with tempfile.TemporaryDirectory() as directory:
                try:
                    data, stdout, elapsed = run_once(
                        script, extra, Path(directory) / "out.json" if supports_json else None
                    )
                except RuntimeError as exc:
                    error = str(exc)
                    print(error, file=sys.stderr)
                    break
            seconds.append(elapsed)
            if data is not None:
                runs.append(data)
        result: dict[str, Any] = {"seconds": seconds, "stdout": stdout, "error": error}
        if runs:
            result["description"] = runs[0].get("description", "")
            result["rows"] = median_rows([run["rows"] for run in runs])
        results[name] = result
    made = plots(results)
    args.output.write_text(write_report(results, made, args.repeat, args.quick))
    print(f"wrote {args.output} and {len(made)} plot(s) in {PLOTS}")


if __name__ == "__main__":
    main()
