"""Tests never touch the platform's default ports.

A developer's own platform (``make up``) may be listening on them while the suite runs, so a
test that probes or binds one either fails for no reason of its own or, worse, passes against
the wrong server. Two guards:

- in the test process, every socket ``connect``/``connect_ex``/``bind`` to a local default port
  is refused and recorded, and the test fails at teardown naming the port (a refused probe
  alone could be swallowed by the code under test, e.g. ``status`` reporting "unhealthy");
- the ``incentives`` subprocesses get an explicit port for every part, and
  :func:`assert_no_default_ports` refuses an environment that leaves one out.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator, Mapping
from typing import Any

from services.cli.settings import PlatformSettings

#: Every ``INCENTIVES_<PART>_PORT`` of the platform and its default (``services.cli.settings``).
DEFAULT_PORT_VARIABLES: dict[str, int] = {
    f"INCENTIVES_{name.upper()}": field.default
    for name, field in PlatformSettings.model_fields.items()
    if name.endswith("_port") and isinstance(field.default, int)
}
DEFAULT_PORTS = frozenset(DEFAULT_PORT_VARIABLES.values())

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::", ""})


def assert_no_default_ports(env: Mapping[str, str]) -> None:
    """Refuse an ``incentives`` environment in which some part would use its default port."""
    left = sorted(
        f"{name}={env.get(name, f'(unset, so {default})')}"
        for name, default in DEFAULT_PORT_VARIABLES.items()
        if env.get(name, str(default)) == str(default)
    )
    assert not left, f"tests never use the platform's default ports: {', '.join(left)}"


def _default_port_of(address: Any) -> int | None:
    if not isinstance(address, tuple) or len(address) < 2:
        return None  # AF_UNIX paths and the like
    host, port = address[0], address[1]
    if isinstance(host, bytes):
        host = host.decode()
    if port in DEFAULT_PORTS and host in _LOCAL_HOSTS:
        return int(port)
    return None


class DefaultPortGuard:
    """Patches ``socket.socket`` so a local default port can be neither reached nor bound."""

    def __init__(self) -> None:
        self.touched: list[str] = []

    def refuse(self, verb: str, address: Any) -> int | None:
        """Record ``verb`` on ``address`` if it is a local default port; return that port."""
        port = _default_port_of(address)
        if port is not None:
            self.touched.append(f"{verb} {port}")
        return port

    @contextlib.contextmanager
    def installed(self) -> Iterator[DefaultPortGuard]:
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex
        original_bind = socket.socket.bind
        guard = self

        def connect(self: socket.socket, address: Any) -> None:
            if (port := guard.refuse("connect to", address)) is not None:
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"default port {port} (tests)")
            original_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            if guard.refuse("connect to", address) is not None:
                return errno.ECONNREFUSED
            return original_connect_ex(self, address)

        def bind(self: socket.socket, address: Any) -> None:
            if (port := guard.refuse("bind", address)) is not None:
                raise OSError(errno.EADDRINUSE, f"default port {port} (tests)")
            original_bind(self, address)

        socket.socket.connect = connect  # type: ignore[method-assign]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
        socket.socket.bind = bind  # type: ignore[method-assign]
        try:
            yield self
        finally:
            socket.socket.connect = original_connect  # type: ignore[method-assign]
            socket.socket.connect_ex = original_connect_ex  # type: ignore[method-assign]
            socket.socket.bind = original_bind  # type: ignore[method-assign]
