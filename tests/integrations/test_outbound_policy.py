"""The address policy, category by category (Python's `ipaddress` misses some of these on its own)."""

from __future__ import annotations

import ipaddress

import anyio
import pytest

from integrations.outbound import (
    DestinationRefused,
    InvalidUrl,
    IPAddress,
    OutboundPolicy,
    check_url,
    is_forbidden_address,
    parse_allowlist,
)

FORBIDDEN = {
    "loopback": "127.0.0.1",
    "loopback, elsewhere in 127/8": "127.255.0.9",
    "IPv6 loopback": "::1",
    "private 10/8": "10.1.2.3",
    "private 172.16/12": "172.31.255.1",
    "private 192.168/16": "192.168.0.10",
    "link-local": "169.254.10.20",
    "AWS/GCP/Azure metadata": "169.254.169.254",
    "AWS metadata over IPv6": "fd00:ec2::254",
    "Alibaba metadata (in CGNAT)": "100.100.100.200",
    "CGNAT 100.64/10": "100.64.0.1",
    "unspecified": "0.0.0.0",
    "IPv6 unspecified": "::",
    "this network 0/8": "0.1.2.3",
    "multicast": "224.0.0.1",
    "globally scoped multicast (is_global in Python)": "233.252.0.1",
    "IPv6 multicast": "ff02::1",
    "reserved 240/4": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "benchmarking 198.18/15": "198.18.0.1",
    "documentation": "192.0.2.1",
    "IPv6 link-local": "fe80::1",
    "IPv6 unique local": "fc00::1",
    "IPv4-mapped loopback": "::ffff:127.0.0.1",
    "IPv4-mapped metadata": "::ffff:169.254.169.254",
    "IPv4-mapped private": "::ffff:10.0.0.1",
    "IPv4-compatible (deprecated)": "::127.0.0.1",
    "NAT64 of loopback (is_global in Python)": "64:ff9b::7f00:1",
    "NAT64 of metadata": "64:ff9b::a9fe:a9fe",
    "NAT64 local-use prefix": "64:ff9b:1::1",
    "6to4 of loopback (is_global in Python)": "2002:7f00:1::1",
    "6to4 of private": "2002:a00:1::1",
    "Teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
}
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "64:ff9b::5db8:d822", "2002:5db8:d822::1"]


@pytest.mark.parametrize("address", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_forbidden(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address: str) -> None:
    assert not is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://017700000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[0:0:0:0:0:ffff:7f00:0001]/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://ｌｏｃａｌｈｏｓｔ/",
        "http://１２７.０.０.１/",
        "http://metadata.google.internal/",
        "http://printer.local/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8080/",
    ],
)
def test_literal_tricks_are_refused_at_create(url: str) -> None:
    with pytest.raises(DestinationRefused):
        check_url(url, rules=[])


@pytest.mark.parametrize(
    "url",
    [
        "http://user@example.com/",
        "http://user:pw@example.com/",
        "http://example.com@127.0.0.1/",
        "gopher://example.com/",
        "file:///etc/passwd",
        "http:///nohost",
        "http://example.com/#frag",
        "http://exa mple.com/",
        "http://example.com\\@127.0.0.1/",
        "http://[fe80::1%25eth0]/",
        "http://256.1.1.1/",
    ],
)
def test_malformed_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidUrl):
        check_url(url, rules=[])


def test_the_allowlist_is_port_granular() -> None:
    rules = parse_allowlist("127.0.0.1:8765, 10.0.0.0/8:443, [::1]:9000, dev.internal")
    assert check_url("http://127.0.0.1:8765/mcp", rules=rules).port == 8765
    assert check_url("https://10.9.8.7/mcp", rules=rules).host == "10.9.8.7"
    assert check_url("http://[::1]:9000/", rules=rules).host == "::1"
    assert check_url("http://dev.internal/", rules=rules).host == "dev.internal"
    for refused in ["http://127.0.0.1:8766/", "http://10.9.8.7/", "http://[::1]:9001/", "http://127.0.0.2:8765/"]:
        with pytest.raises(DestinationRefused):
            check_url(refused, rules=rules)


@pytest.mark.parametrize("entry", ["127.0.0.1:0", "127.0.0.1:http", "[::1", "10.0.0.0/8:70000"])
def test_bad_allowlist_entries_are_errors(entry: str) -> None:
    with pytest.raises(ValueError, match="MCP_OUTBOUND_ALLOWLIST"):
        parse_allowlist(entry)


def _policy(answers: dict[str, list[str]], allow: str = "") -> tuple[OutboundPolicy, list[str]]:
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in answers[host]]

    return OutboundPolicy(rules=tuple(parse_allowlist(allow)), resolver=resolver), lookups


def test_resolve_once_and_refuse_if_any_address_is_internal() -> None:
    policy, lookups = _policy({"mixed.test": ["93.184.216.34", "10.0.0.1"], "public.test": ["93.184.216.34"]})
    with pytest.raises(DestinationRefused):
        anyio.run(policy.checked_addresses, "mixed.test", 443)
    assert anyio.run(policy.checked_addresses, "public.test", 443) == [ipaddress.ip_address("93.184.216.34")]
    assert lookups == ["mixed.test", "public.test"]


def test_allowlist_by_name_and_by_network_at_connect_time() -> None:
    policy, _ = _policy({"dev.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}, allow="dev.test:8000,10.0.0.0/8")
    assert anyio.run(policy.checked_addresses, "dev.test", 8000)
    assert anyio.run(policy.checked_addresses, "10.1.1.1", 25)
    for host, port in [("dev.test", 8001), ("other.test", 8000)]:
        with pytest.raises(DestinationRefused):
            anyio.run(policy.checked_addresses, host, port)


def test_loose_numeric_hosts_are_read_as_addresses_at_connect_time() -> None:
    policy, lookups = _policy({})
    for host in ["2130706433", "0x7f000001", "127.1", "0177.0.0.1"]:
        with pytest.raises(DestinationRefused):
            anyio.run(policy.checked_addresses, host, 80)
    assert lookups == []  # decided without a DNS lookup
