"""Deadlines a socket cannot outwait: when a poll's deadline passes, the connections it is still using are shut down.

A socket timeout bounds one `recv`, not a request: an API that drips a header line or a body byte just before each
timeout would hold a poll for ever. So one watchdog thread keeps every running poll's deadline in a heap and, when one
passes, shuts down that poll's sockets; the blocked read returns at once and the client reports `timeout`. The
connections find their poll through a thread-local, set by `WATCHDOG.watch(deadline)` around the poll.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["WATCHDOG", "Watchdog", "DeadlineAdapter"]

_current = threading.local()


def _shut_down(connection: Any) -> None:
    """Shut the connection's socket down for both directions, waking any thread blocked on it (TLS included)."""
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's method: safe under an SSLSocket
        except OSError:  # already closed or never connected
            pass


class _Watch:
    """One poll's deadline and the connections it has used so far."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.lock = threading.Lock()
        self.connections: list[Any] = []
        self.expired = False
        self.done = False

    def attach(self, connection: Any) -> None:
        """Watch a connection the poll is about to use; one used after the deadline is shut down at once."""
        with self.lock:
            if self.done:
                return
            connection._deadline_watch = self
            if connection not in self.connections:
                self.connections.append(connection)
            if self.expired:
                _shut_down(connection)

    def expire(self) -> None:
        """The deadline passed: shut down every connection still in use."""
        with self.lock:
            if self.done:
                return
            self.expired = True
            for connection in self.connections:
                _shut_down(connection)

    def finish(self) -> None:
        """The poll is over: its connections (back in the pool) are no longer its business."""
        with self.lock:
            self.done = True
            self.connections.clear()


class Watchdog:
    """One daemon thread that expires watches at their deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    @contextmanager
    def watch(self, deadline: float) -> Iterator[_Watch]:
        """Within this block, connections this thread uses are shut down when `deadline` (monotonic) passes."""
        watch = _Watch(deadline)
        entry = (deadline, next(self._order), watch)
        with self._wake:
            heapq.heappush(self._heap, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="metrics-bridge-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()
        outer = getattr(_current, "watch", None)
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = outer
            watch.finish()
            with self._wake:  # out of the heap at once: it holds only the polls running now (O(n) for n of them)
                try:
                    self._heap.remove(entry)
                    heapq.heapify(self._heap)
                except ValueError:  # already expired and popped
                    pass

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    if not self._heap:
                        self._wake.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        watch = heapq.heappop(self._heap)[2]
                        break
                    self._wake.wait(wait)
            watch.expire()


WATCHDOG = Watchdog()


class _Watched:
    """A urllib3 connection that joins the current thread's watch whenever it connects or sends a request."""

    def _join_watch(self) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.attach(self)

    def connect(self) -> None:
        """Connect (the TCP connect itself is bounded by the connect timeout, the TLS handshake by the watch)."""
        self._join_watch()
        super().connect()  # type: ignore[misc]
        self._join_watch()

    def request(self, *args: Any, **kwargs: Any) -> None:
        """Send a request on a connection that may come from the pool."""
        self._join_watch()
        super().request(*args, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        """Close under the watch's lock, so the watchdog never shuts down a file descriptor already reused."""
        watch = getattr(self, "_deadline_watch", None)
        if watch is None:
            super().close()  # type: ignore[misc]
            return
        with watch.lock:
            super().close()  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections that honour the watchdog."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager with watched connection classes."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
