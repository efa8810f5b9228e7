"""A TCP proxy a test controls: put it between a client and a server, then cut the line.

``cut()`` closes the listening socket and every open connection, so the client sees its
connections drop and new ones refused (``ECONNREFUSED``), as when the server's host is down;
``restore()`` listens again on the same port. The server itself keeps running, so a shared
one (the session's PostgreSQL or Temporal) is never stopped.

``lose_next_commit_answer()`` cuts finer: the next PostgreSQL ``COMMIT`` a client sends reaches
the server, which commits, but its answer is dropped and that connection reset, so the client
sees its commit fail although it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from services.cli.embedded import free_port

_CHUNK = 64 * 1024
#: The request whose answer :meth:`TcpProxy.lose_next_commit_answer` drops: a simple-query
#: message (``Q``, its length, the text) that is a ``COMMIT`` (asyncpg sends ``COMMIT;``), so
#: the word inside a row's values is not mistaken for it.
_COMMIT = re.compile(rb"Q.{4}COMMIT;?\x00", re.DOTALL)


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream_host:upstream_port`` until cut."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        #: Connections accepted so far (a test can wait for clients to come back).
        self.accepted = 0
        #: Whether the next COMMIT's answer is to be dropped (see :meth:`lose_next_commit_answer`).
        self._lose_commit_answer = False
        #: COMMIT answers dropped so far.
        self.commit_answers_lost = 0

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, for a client's settings."""
        return f"127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again) on :attr:`port`."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def restore(self) -> None:
        """The line is back: accept connections again."""
        await self.start()

    async def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`restore`."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, not a polite close: the host is gone
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def stop(self) -> None:
        await self.cut()

    def lose_next_commit_answer(self) -> None:
        """Let the next ``COMMIT`` through, drop the server's answer, reset that connection."""
        self._lose_commit_answer = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        # Set once this connection's COMMIT went up with its answer to be lost.
        committing = asyncio.Event()

        def sending(data: bytes) -> bool:
            """Forward every request; arm the loss when it is the COMMIT to lose."""
            if self._lose_commit_answer and _COMMIT.search(data):
                self._lose_commit_answer = False
                committing.set()
            return True

        def answered(_data: bytes) -> bool:
            """Whether to forward an answer; the first after a lost COMMIT is dropped."""
            if not committing.is_set():
                return True
            self.commit_answers_lost += 1
            writer.transport.abort()
            up_writer.transport.abort()
            return False

        try:
            await asyncio.gather(
                _pump(reader, up_writer, before=sending), _pump(up_reader, writer, before=answered)
            )
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            self._pipes.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    before: Callable[[bytes], bool] | None = None,
) -> None:
    while data := await reader.read(_CHUNK):
        if before is not None and not before(data):
            return
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


@asynccontextmanager
async def tcp_proxy(upstream_host: str, upstream_port: int) -> AsyncIterator[TcpProxy]:
    """A started :class:`TcpProxy`, stopped at the end."""
    proxy = TcpProxy(upstream_host, upstream_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
