#!/usr/bin/env python3
"""Install the pinned checkov into its own virtualenv, .tools/checkov (stdlib only).

checkov pins ``packaging<24`` (and much else), so it cannot share the project's .venv: it gets a
venv of its own, created with ``python -m venv`` from the Python running this script, and is
installed from PyPI alone (``PIP_CONFIG_FILE=/dev/null``, no ``PIP_FIND_LINKS``), as on a user's
machine.

Result: ``.tools/checkov/bin/checkov`` (checkov 3.3.30), run by tests/charts/test_checkov.py with
``--skip-download`` (no network at scan time).

Idempotent: an installed checkov that reports the pinned version is left alone.
Usage: ``python scripts/install_checkov.py [--force]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".tools" / "checkov"
VERSION = "3.3.30"
CHECKOV = VENV / "bin" / "checkov"


def installed_version() -> str | None:
    if not CHECKOV.is_file():
        return None
    try:
        proc = subprocess.run([str(CHECKOV), "--version"], capture_output=True, text=True, timeout=120, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def install(force: bool) -> None:
    current = installed_version()
    if current == VERSION and not force:
        print(f"checkov {VERSION} already installed in {VENV}")
        CHECKOV.touch()  # newer than this script, so make does not ask again
        return
    if VENV.exists():
        shutil.rmtree(VENV)
    print(f"installing checkov {VERSION} into {VENV} (a minute or two on first run)")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", f"checkov=={VERSION}"],
        check=True,
        env=pip_env(),
    )
    got = installed_version()
    if got != VERSION:
        raise SystemExit(f"checkov reports version {got!r} after install, expected {VERSION}")
    print(f"checkov {got} installed: {CHECKOV}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if the pinned version is present")
    install(parser.parse_args().force)


if __name__ == "__main__":
    main()
