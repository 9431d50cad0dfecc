"""Which upstream addresses, names and ports the egress policy allows (pure functions, no network)."""

from __future__ import annotations

import ipaddress

import pytest

from tool_registry.egress import EgressPolicy, EgressRefused, check_origin, is_public


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "::1",
        "169.254.169.254",  # AWS, GCP, Azure metadata
        "fd00:ec2::254",  # AWS metadata over IPv6
        "100.100.100.200",  # Alibaba metadata (CGNAT range)
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
        "::",
        "224.0.0.1",
        "ff02::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "192.0.2.1",  # documentation
        "240.0.0.1",  # reserved
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allowlist_entries_and_ports() -> None:
    policy = EgressPolicy.parse(["MCP.example.com.", "*.tools.example", "10.96.0.0/12", "[::1]"], ["443", "8000-8099"])
    assert check_origin("https://mcp.example.com/mcp", policy) == ("https", "mcp.example.com", 443)
    assert check_origin("http://a.b.tools.example:8080/mcp", policy)[2] == 8080
    assert policy.listed(ipaddress.ip_address("10.100.0.1")) and policy.listed(ipaddress.ip_address("::1"))
    refusals = {
        "https://tools.example/mcp": "host",  # the wildcard covers subdomains only
        "https://mcp.example.com.evil.net/mcp": "host",
        "https://10.95.255.255/mcp": "address",
        "http://mcp.example.com/mcp": "port 80",
        "https://mcp.example.com:8100/mcp": "port 8100",
    }
    for url, reason in refusals.items():
        with pytest.raises(EgressRefused, match=reason):
            check_origin(url, policy)


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "host:8080", "*", "a*.example.com"])
def test_malformed_host_entries_are_rejected(entry: str) -> None:
    with pytest.raises(ValueError, match="UPSTREAM_ALLOWED_HOSTS"):
        EgressPolicy.parse([entry], ["443"])


@pytest.mark.parametrize("ports", [["https"], ["0"], ["70000"], ["9000-8000"]])
def test_malformed_ports_are_rejected(ports: list[str]) -> None:
    with pytest.raises(ValueError, match="port"):
        EgressPolicy.parse(["example.com"], ports)
