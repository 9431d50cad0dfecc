"""The embedded PostgreSQL under private directories, as a user's ``mktemp -d`` or ``/root`` clone has.

As root the server runs as ``nobody``: binaries it cannot reach are copied to a public place (with
the wheel's vendored libraries), and a data directory it cannot reach stops start-up with one line
that names the private directory and the fix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from platform_common.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root drops to 'nobody'; as any other user the server runs as that user"
)


def _public_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="mcp-test-pg-"))
    path.chmod(0o755)
    return path


def test_data_dir_under_a_private_parent_names_it_and_the_fix() -> None:
    private = Path(tempfile.mkdtemp(prefix="mcp-test-private-"))  # mode 0700, as mktemp -d makes
    server = EmbeddedPostgres(private / "clone" / ".data")
    with pytest.raises(EmbeddedPostgresError) as caught:
        server.start()
    message = str(caught.value)
    assert f"{private} is private" in message
    assert "DATA_DIR" in message
    assert "\n" not in message


def test_binaries_under_a_private_parent_are_copied_where_nobody_reaches_them() -> None:
    # A venv inside a private clone: reach the wheel's installation only through a 0700 directory.
    private = Path(tempfile.mkdtemp(prefix="mcp-test-private-"))
    server = EmbeddedPostgres(_public_dir() / "data")
    (private / "site-packages").symlink_to(server._install.parent.parent)
    server._install = private / "site-packages" / server._install.parent.name / server._install.name
    server.start()
    try:
        assert not server._install.is_relative_to(private)
        server.wait_until_accepting()
    finally:
        server.stop()
