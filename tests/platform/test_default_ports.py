"""The guard that keeps tests off the platform's default ports can fail a test."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.default_ports import DEFAULT_PORT_VARIABLES, DefaultPortGuard, assert_no_default_ports
from tests.platform.helpers import PlatformRun


def test_a_connect_to_a_default_port_is_refused_and_recorded() -> None:
    guard = DefaultPortGuard()
    with guard.installed(), socket.socket() as sock:
        with pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", 8001))
        assert sock.connect_ex(("localhost", 9092)) != 0
    assert guard.touched == ["connect to 8001", "connect to 9092"]


def test_binding_a_default_port_is_refused_and_other_ports_are_not() -> None:
    guard = DefaultPortGuard()
    with guard.installed(), socket.socket() as taken, socket.socket() as free:
        with pytest.raises(OSError, match="default port 8233"):
            taken.bind(("0.0.0.0", 8233))
        free.bind(("127.0.0.1", 0))
    assert guard.touched == ["bind 8233"]


def test_every_platform_run_names_a_port_for_every_part(tmp_path: Path) -> None:
    run = PlatformRun.on_free_ports(tmp_path)
    assert_no_default_ports(run.env)
    for variable in DEFAULT_PORT_VARIABLES:
        assert run.env[variable] != str(DEFAULT_PORT_VARIABLES[variable])


def test_an_environment_without_explicit_ports_is_refused() -> None:
    with pytest.raises(AssertionError, match=r"INCENTIVES_APPLICATIONS_PORT=\(unset, so 8001\)"):
        assert_no_default_ports({})
    with pytest.raises(AssertionError, match="INCENTIVES_BROKER_PORT=9092"):
        assert_no_default_ports(
            {**dict.fromkeys(DEFAULT_PORT_VARIABLES, "1"), **{"INCENTIVES_BROKER_PORT": "9092"}}
        )
