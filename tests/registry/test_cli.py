"""The ``tool-registry`` CLI: import a file, search it, re-embed everything (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.registry.conftest import tool


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-c", "from tool_registry.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_import_search_and_reindex(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps([tool("weather.now", "Current weather for a city."), tool("pdf.read", "Read a PDF.")]))
    imported = cli(database_url, "import", str(path))
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == 2

    found = cli(database_url, "search", "is it raining in Oslo", "--limit", "1")
    assert found.returncode == 0, found.stderr
    assert [r["name"] for r in json.loads(found.stdout)["results"]] == ["weather.now"]

    reindexed = cli(database_url, "reindex")
    assert json.loads(reindexed.stdout) == {"embedded": 2, "model": "all-MiniLM-L6-v2"}

    path.write_text(json.dumps([{"name": "bad name", "input_schema": {"type": "object"}}]))
    failed = cli(database_url, "import", str(path))
    assert failed.returncode != 0 and "name" in failed.stderr
