"""The allow-list judges every address a name resolves to (the requests themselves, to a real
server: tests/integration/test_http_dns.py)."""

from __future__ import annotations

import ipaddress
import threading
import time
from typing import Any

import httpcore
import pytest

from engine.transport import Refused, checked_addresses
from tests.support.fakedns import FakeDns


def judge(address: str | list[str], allowed: list[str], host: str = "hook.internal.example") -> list[str]:
    dns = FakeDns({host: address if isinstance(address, list) else [address]})
    return [str(a) for a in checked_addresses(host, 80, allowed, dns, timeout=5)]


ALLOWED = ["*.internal.example"]


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.1.1", "fe80::1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"],
)
def test_link_local_is_refused_whatever_the_list_says(address: str) -> None:
    """A name resolving to link-local (cloud metadata) is refused even when the list names the address."""
    for allowed in (ALLOWED, ["*"], [*ALLOWED, "169.254.169.254", "169.254.0.0/16", "fe80::/10"]):
        with pytest.raises(Refused, match=r"resolves to .*: link-local addresses \(cloud metadata\)"):
            judge(address, allowed)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"])
def test_unspecified_multicast_broadcast_are_refused(address: str) -> None:
    """0.0.0.0, ::, multicast and broadcast are never reached."""
    with pytest.raises(Refused, match="never reached"):
        judge(address, ["*", "0.0.0.0/0", "::/0"])


@pytest.mark.parametrize(
    ("address", "entry"),
    [
        ("10.1.2.3", "10.0.0.0/8"),
        ("10.1.2.3", "10.1.2.3"),
        ("10.1.2.3", "10.1.*"),
        ("192.168.7.7", "192.168.0.0/16"),
        ("172.16.0.9", "172.16.0.0/12"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("fd12::1", "fd00::/8"),
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.0/8"),
        ("127.0.0.1", "localhost"),
        ("::1", "localhost"),
        ("::ffff:10.1.2.3", "10.0.0.0/8"),
    ],
)
def test_private_and_loopback_need_an_entry_naming_them(address: str, entry: str) -> None:
    """Private, CGNAT, ULA and loopback addresses are refused unless an entry names the address or range."""
    with pytest.raises(Refused, match=r"address is reached only when http.allowed_hosts lists it"):
        judge(address, ALLOWED)
    with pytest.raises(Refused):
        judge(address, ["*"])  # a name glob does not allow addresses
    assert judge(address, [*ALLOWED, entry]) == [str(ipaddress.ip_address(address))]


def test_localhost_entry_allows_loopback_only() -> None:
    """The `localhost` entry stands for loopback, not for private networks."""
    assert judge("127.0.0.1", [*ALLOWED, "localhost"]) == ["127.0.0.1"]
    with pytest.raises(Refused, match="private address"):
        judge("10.0.0.1", [*ALLOWED, "localhost"])


def test_public_address_is_allowed_by_name() -> None:
    """A name matching the list that resolves to a public address is reached."""
    assert judge(["93.184.216.34", "2606:2800:220:1::1"], ALLOWED) == ["93.184.216.34", "2606:2800:220:1::1"]


def test_every_address_must_pass() -> None:
    """One bad address among good ones refuses the host."""
    with pytest.raises(Refused, match="resolves to 169.254.169.254"):
        judge(["93.184.216.34", "169.254.169.254"], ALLOWED)


def test_ip_literal_is_judged_without_dns() -> None:
    """An address literal is judged as itself; the resolver is not asked."""
    dns = FakeDns({})
    assert [str(a) for a in checked_addresses("127.0.0.1", 80, ["127.0.0.1"], dns, 5)] == ["127.0.0.1"]
    with pytest.raises(Refused, match=r"^http: host '169.254.169.254.': link-local"):
        checked_addresses("169.254.169.254.", 80, ["*"], dns, 5)
    assert dns.calls == []


def test_unknown_name_is_a_connect_error() -> None:
    """A name that does not resolve is a (retryable) connect error naming it."""
    with pytest.raises(httpcore.ConnectError, match="cannot resolve 'nowhere.internal.example'"):
        checked_addresses("nowhere.internal.example", 80, ALLOWED, FakeDns({}), 5)


def test_stuck_resolver_is_bounded_by_the_time_left() -> None:
    """A resolver that hangs ends as a timeout after the time left, not when DNS gives up."""
    release = threading.Event()

    def stuck(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        release.wait(10)
        return []

    started = time.monotonic()
    with pytest.raises(httpcore.ConnectTimeout):
        checked_addresses("slow.internal.example", 80, ALLOWED, stuck, timeout=0.3)
    assert time.monotonic() - started < 3
    release.set()
