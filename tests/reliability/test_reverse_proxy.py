"""Client identity and one rate limit behind a real reverse proxy: Debian's nginx in front of real apps.

nginx is configured as an Ingress controller is: it terminates TLS (a certificate made here), sends
``X-Forwarded-For: $proxy_add_x_forwarded_for``, ``X-Forwarded-Proto: $scheme``,
``X-Forwarded-Host``/``Host: $host``, and balances round-robin over three Tree-of-Thoughts
processes with two workers each, sharing one PostgreSQL. The apps trust only the proxies
(``FORWARDED_ALLOW_IPS=127.0.0.0/8,10.0.0.0/8``: nginx, and an inner proxy tier in one test) and
know their public URLs (``ISSUER_URL``, ``PUBLIC_URL``) as the chart sets them.

Every test client connects from 127.0.0.1, so nginx itself gives each one its address: the realip
module takes it from an ``X-Test-Client`` header (trusted from 127.0.0.1 only), exactly where a
real edge takes the peer address (or PROXY protocol) from its load balancer. The apps therefore see
what they would see in a cluster: ``X-Forwarded-For`` as nginx builds it, including any value the
client sent itself in front of the address nginx appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.reliability.harness import AppProcess, dedicated_postgres, registry_process, tot_process, wait_until
from tests.servers import free_port

NGINX_CANDIDATES = (shutil.which("nginx"), "/usr/sbin/nginx")
LIMIT = 100  # RATE_LIMIT_PER_MINUTE, the default
REGISTRY_HOST = "registry.test"
TOT_HOST = "tot.test"
SECRET = "s3cret-for-the-proxy-test"
CLIENTS = [{"client_id": "agent", "secret_sha256": hashlib.sha256(SECRET.encode()).hexdigest(), "scopes": ["tot:run"]}]

pytestmark = pytest.mark.slow


def nginx_binary() -> str:
    """Debian's nginx (``make test`` installs it); skip with the reason when it is not there."""
    for candidate in NGINX_CANDIDATES:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    print("nginx is not installed (make system-packages installs it): skipping")
    pytest.skip("nginx is not installed (make system-packages installs it)")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway CA-style self-signed certificate for both public names and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-platform proxy test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(REGISTRY_HOST),
                    x509.DNSName(TOT_HOST),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def server_block(port: int, upstream: str, cert: Path, key: Path) -> str:
    """One TLS virtual server proxying everything to ``upstream`` with an Ingress's headers."""
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}"""


def nginx_config(directory: Path, upstreams: dict[str, list[AppProcess]], ports: dict[str, int]) -> str:
    cert, key = self_signed_certificate(directory)
    blocks = "".join(
        f"""
    upstream {name} {{
        {" ".join(f"server 127.0.0.1:{app.port};" for app in apps)}
        keepalive 32;
    }}"""
        + server_block(ports[name], name, cert, key)
        for name, apps in upstreams.items()
    )
    # As root the master must name a user its workers may run as: root, to read this private directory.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    # The test's stand-in for the edge's view of the peer (see the module docstring).
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Test-Client;
    {blocks}
}}
"""


@contextlib.contextmanager
def running_nginx(binary: str, upstreams: dict[str, list[AppProcess]]) -> Iterator[dict[str, int]]:
    """nginx in the foreground on fresh ports (one per upstream); stopped (and waited for) on exit."""
    directory = Path(tempfile.mkdtemp(prefix="mcp-nginx-"))
    ports = {name: free_port() for name in upstreams}
    (directory / "nginx.conf").write_text(nginx_config(directory, upstreams, ports))
    process = subprocess.Popen(
        [binary, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(directory / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_listening(process, directory, ports.values())
        yield ports
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def wait_listening(process: subprocess.Popen[bytes], directory: Path, ports: Iterable[int]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (directory / "error.log").read_text(errors="replace") if (directory / "error.log").exists() else ""
            raise RuntimeError(f"nginx exited with {process.returncode}: {log}")
        if all(listening(port) for port in ports):
            return
        time.sleep(0.05)
    raise TimeoutError("nginx did not start listening")


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@dataclass
class Platform:
    """What the tests talk to: nginx's TLS ports, and the apps behind it."""

    registry_port: int
    tot_port: int
    tots: list[AppProcess]
    ca: ssl.SSLContext

    def client(self, app: str, address: str) -> httpx.AsyncClient:
        """A client that nginx sees as ``address``, sending the public Host of ``app``."""
        port, host = (self.registry_port, REGISTRY_HOST) if app == "registry" else (self.tot_port, TOT_HOST)
        return httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}",
            headers={"Host": host, "X-Test-Client": address},
            verify=self.ca,
            timeout=30,
            limits=httpx.Limits(max_connections=20),
        )


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    binary = nginx_binary()
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(dedicated_postgres()).url
        keys_dir = tempfile.mkdtemp(prefix="mcp-proxy-keys-")
        stack.callback(shutil.rmtree, keys_dir, ignore_errors=True)
        # nginx (127.0.0.1, as a CIDR) and an inner proxy tier (10.0.0.0/8) are trusted.
        trusted = {
            "FORWARDED_ALLOW_IPS": "127.0.0.0/8,10.0.0.0/8",
            "RATE_LIMIT_PER_MINUTE": str(LIMIT),
            "AUTH_MODE": "jwt",
        }
        tots = [
            tot_process(
                database_url,
                **trusted,
                WORKERS="2",
                ISSUER_URL=f"https://{TOT_HOST}",
                OAUTH_CLIENTS=json.dumps(CLIENTS),
                DATA_DIR=keys_dir,  # one file key ring for the three "pods", as one Secret would be
            )
            for _ in range(3)
        ]
        for app in tots:
            stack.callback(app.stop)
            app.launch()
        for app in tots:
            app.wait_ready(90)
        registry = registry_process(
            database_url,
            **trusted,
            PUBLIC_URL=f"https://{REGISTRY_HOST}",
            AUTH_JWKS_URL=f"{tots[0].url}/.well-known/jwks.json",
            AUTH_ISSUER=f"https://{TOT_HOST}",
        )
        stack.callback(registry.stop)
        registry.start(ready_timeout=90)
        ports = stack.enter_context(running_nginx(binary, {"registry": [registry], "tot": tots}))
        ca = ssl.create_default_context(cadata=self_signed_ca_pem(ports))
        yield Platform(ports["registry"], ports["tot"], tots, ca)


def self_signed_ca_pem(ports: dict[str, int]) -> str:
    """The certificate nginx serves, fetched from it: the one trust anchor the clients accept."""
    return ssl.get_server_certificate(("127.0.0.1", ports["tot"]))


async def wrong_secret(client: httpx.AsyncClient) -> int:
    response = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("agent", "wrong"),
        # A client spoofing its address: nginx appends the one it saw, the apps take that one.
        headers={"X-Forwarded-For": f"203.0.113.{time.monotonic_ns() % 250}"},
    )
    return response.status_code


async def test_one_client_spending_its_budget_leaves_another_untouched_and_the_limit_is_platform_wide(
    platform: Platform,
) -> None:
    async with platform.client("tot", "192.0.2.10") as greedy, platform.client("tot", "192.0.2.20") as other:
        started = time.monotonic()
        statuses = await asyncio.gather(*(wrong_secret(greedy) for _ in range(2 * LIMIT)))
        elapsed = time.monotonic() - started
        admitted = sum(status != 429 for status in statuses)
        print(f"through nginx: {admitted} of {2 * LIMIT} admitted in {elapsed:.1f} s (limit {LIMIT}/min)")
        assert set(statuses) <= {401, 429}
        # 3 processes x 2 workers, one budget: within 20 % of the limit (plus the refill while sending).
        assert 0.8 * LIMIT <= admitted <= 1.2 * LIMIT + elapsed * LIMIT / 60
        assert (await greedy.get("/.well-known/jwks.json")).status_code == 429

        token = await other.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("agent", SECRET))
        assert token.status_code == 200, token.text
        assert token.json()["token_type"].lower() == "bearer"
        assert (await other.get("/.well-known/jwks.json")).status_code == 200
    # The access logs name the real client, and the requests were spread over the three processes.
    logs = [app.log_text() for app in platform.tots]
    assert all('"client":"192.0.2.10"' in log for log in logs)
    assert not any("203.0.113." in log for log in logs)


async def test_behind_a_chain_of_trusted_proxies_the_client_is_the_address_before_them(platform: Platform) -> None:
    # nginx sees an inner proxy at 10.9.9.9 (trusted) that forwarded for 192.0.2.77.
    async with platform.client("tot", "10.9.9.9") as client:
        response = await client.get("/.well-known/jwks.json", headers={"X-Forwarded-For": "192.0.2.77"})
    assert response.status_code == 200

    async def logged() -> bool:
        return any('"client":"192.0.2.77"' in app.log_text() for app in platform.tots)

    # The access log line is written as the response completes, which can be after the client has it.
    assert await wait_until(logged, timeout=5)
    assert not any('"client":"10.9.9.9"' in app.log_text() for app in platform.tots)


async def test_discovery_documents_name_the_public_https_urls_whatever_the_host_header(
    platform: Platform,
) -> None:
    for host in (TOT_HOST, "evil.example"):
        async with platform.client("tot", "192.0.2.30") as tot:
            metadata = (await tot.get("/.well-known/oauth-authorization-server", headers={"Host": host})).json()
        assert metadata["issuer"] == f"https://{TOT_HOST}"
        assert metadata["token_endpoint"] == f"https://{TOT_HOST}/oauth/token"
        assert metadata["jwks_uri"] == f"https://{TOT_HOST}/.well-known/jwks.json"
        async with platform.client("registry", "192.0.2.30") as registry:
            resource = (await registry.get("/.well-known/oauth-protected-resource", headers={"Host": host})).json()
            challenge = (await registry.get("/api/v1/tools", headers={"Host": host})).headers["www-authenticate"]
        assert resource["resource"] == f"https://{REGISTRY_HOST}"
        assert resource["authorization_servers"] == [f"https://{TOT_HOST}"]
        assert f'resource_metadata="https://{REGISTRY_HOST}/.well-known/oauth-protected-resource"' in challenge


async def test_health_is_reachable_through_the_proxy_on_both_hosts(platform: Platform) -> None:
    for app in ("registry", "tot"):
        async with platform.client(app, "192.0.2.40") as client:
            response = await client.get("/health")
        assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(platform: Platform) -> None:
    """Straight to an app that trusts only 10.0.0.0/8: from 127.0.0.1 the header is just a claim."""
    app = tot_process("", FORWARDED_ALLOW_IPS="10.0.0.0/8", RATE_LIMIT_PER_MINUTE="5", AUTH_MODE="jwt")
    with app:
        metadata = httpx.get(
            f"{app.url}/.well-known/oauth-protected-resource", headers={"X-Forwarded-Proto": "https"}
        ).json()
        statuses = [
            httpx.get(
                f"{app.url}/.well-known/jwks.json",
                headers={"X-Forwarded-For": f"198.51.100.{i}", "X-Forwarded-Proto": "https"},
            ).status_code
            for i in range(8)
        ]
    # Nine "different clients" were one, the peer, limited to 5 (the in-memory limiter: no database).
    assert statuses == [200] * 4 + [429] * 4
    assert '"client":"127.0.0.1"' in app.log_text() and "198.51.100." not in app.log_text()
    assert metadata["resource"].startswith("http://")  # X-Forwarded-Proto ignored from an untrusted peer
