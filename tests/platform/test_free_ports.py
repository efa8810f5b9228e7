"""``free_port``/``free_ports``: ports outside the kernel's ephemeral range, checked by binding."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import embedded
from services.cli.embedded import (
    DEFAULT_EPHEMERAL_RANGE,
    EmbeddedError,
    ephemeral_port_range,
    free_port,
    free_port_candidates,
    free_ports,
)


class _Draws:
    """Stands in for the module's random source: ``choice`` returns the given ports in turn."""

    def __init__(self, ports: list[int]) -> None:
        self._ports: Iterator[int] = iter(ports)

    def choice(self, _candidates: range) -> int:
        return next(self._ports)


def _draw(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> None:
    """Make the next draws ``ports``, forgetting the ports this process handed out so far."""
    monkeypatch.setattr(embedded, "_RECENT_PORTS", deque(maxlen=1024))
    monkeypatch.setattr(embedded, "_RANDOM", _Draws(ports))


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port outside the ephemeral range that this test listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        yield sock.getsockname()[1]


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    low, _high = ephemeral_port_range()
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(embedded.LOWEST_FREE_PORT <= port < low for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_the_range_is_read_from_the_kernel_or_defaults(tmp_path: Path) -> None:
    configured = tmp_path / "ip_local_port_range"
    configured.write_text("40000\t50999\n")
    assert ephemeral_port_range(configured) == (40000, 50999)
    configured.write_text("garbage\n")
    assert ephemeral_port_range(configured) == DEFAULT_EPHEMERAL_RANGE
    assert ephemeral_port_range(tmp_path / "missing") == DEFAULT_EPHEMERAL_RANGE


def test_candidates_lie_in_the_larger_span_outside_the_ephemeral_range() -> None:
    assert free_port_candidates((32768, 60999)) == range(20000, 32768)
    assert free_port_candidates((21000, 40000)) == range(40001, 65536)
    assert free_port_candidates((1024, 65535)) is None


def test_without_room_outside_the_range_the_kernel_picks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedded, "free_port_candidates", lambda: None)
    ports = free_ports(3)
    assert len(set(ports)) == 3


def test_a_taken_port_is_skipped(monkeypatch: pytest.MonkeyPatch, held_port: int) -> None:
    other = free_port()
    _draw(monkeypatch, [held_port, held_port, other])
    assert free_ports(1) == [other]


def test_a_port_is_not_handed_out_twice_in_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = free_ports(2)
    _draw(monkeypatch, [first, first, first, second])
    assert free_port() == first
    assert free_port() == second  # first is not bound yet, yet not handed out again


def test_one_call_never_returns_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = free_ports(2)
    _draw(monkeypatch, [first, first, second])
    assert free_ports(2) == [first, second]


def test_no_free_port_is_an_error(monkeypatch: pytest.MonkeyPatch, held_port: int) -> None:
    monkeypatch.setattr(embedded, "ATTEMPTS_PER_PORT", 3)
    _draw(monkeypatch, [held_port] * 3)
    with pytest.raises(EmbeddedError, match="no 1 free ports found"):
        free_ports(1)
