"""The HTTP server under the WSGI app: uvicorn (h11) on eight uvloop event loops, with the limits a hostile network
needs, at the edge, for all of them together.

    connections   at most `max_connections` open; past it a new one gets `503` and is closed at once
    request head  request line + headers within `head_timeout` seconds and `max_head_bytes` bytes, else closed / 400
    requests      at most `max_requests` in flight (exporter-toolkit's `--web.max-requests`); past it `503`
    idle          a keep-alive connection idle for `keep_alive_timeout` seconds is closed; idle ones cost no thread
    slow readers  a connection whose queued response makes no progress for `write_stall_timeout` seconds is aborted
    EMFILE        accepting pauses for 1 s (one warning) instead of spinning, as asyncio's own accept loop does

Connection-level events (resets, timeouts, malformed requests) are logged on `exporter.server` at debug.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

import h11
import uvicorn
from a2wsgi.wsgi import Body, build_environ
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # libuv's event loop (not on Windows; there the server runs on asyncio's own loop)
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency wherever it installs
    uvloop = None

__all__ = ["Limits", "MetricsServer", "raise_open_files_limit"]

log = logging.getLogger("exporter.server")

DEFAULT_MAX_REQUESTS = 40

# The event-loop threads serve connections beside poll threads that map JSON holding the GIL for a second or more
# (and parse it in one C call of ~0.2 s at 200k series). Each socket call releases the GIL, and taking it back waits
# for the poll thread's switch interval (5 ms by default): under a poll a loop makes one step per interval. So each
# write should move much (a 4 MiB send buffer, 1 MiB writes: 29 MB in ~30 writes, not ~140, counted with strace)
# and the wait should be short (1 ms; a thread holding the GIL is asked to drop it only while another one waits, so
# a poll alone runs as fast as before).
SWITCH_INTERVAL = 0.001
# Under a poll, what a connection gets is its loop's share of the GIL: a thread per connection (the wsgiref server
# before) has one waiter per connection, a loop one for all of its connections. And each step of a request costs
# asyncio's pure-Python loop several GIL turns where libuv's costs one. Measured in bench/'s way (20 scraper
# processes, half gzip, polls running, A B B A against wsgiref, gzip p99): asyncio 1 loop 1.15 s, 4 loops 1.0 s,
# 8 loops 0.74 s, 16 loops 0.56 s (wsgiref 0.36-0.46 s); uvloop 4 loops 0.57 s, 8 loops 0.32-0.38 s (wsgiref
# 0.38-0.56 s), 16 loops no better than 8.
EVENT_LOOPS = 8


ACCEPT_RETRY_DELAY = 1.0  # seconds without accepting after EMFILE/ENFILE (asyncio's constants.ACCEPT_RETRY_DELAY)
WARNING_SPACING = 10.0
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


_last_warning = [0.0]


def _warn_once_in_a_while(message: str, *args: Any) -> None:
    """A warning at most every WARNING_SPACING seconds across the loops (each loop retries on its own), else debug."""
    now = time.monotonic()
    if now - _last_warning[0] >= WARNING_SPACING:
        _last_warning[0] = now
        log.warning(message, *args)
    else:
        log.debug(message, *args)


class _Acceptor:
    """One loop's accepting from the listening socket, as `loop.create_server` would, but pausing when the process
    is out of descriptors: libuv's accept loop then closes what it can accept and, once its spare descriptor is
    gone, spins (measured: 2 cores busy past the limit); asyncio's pauses 1 s, and so does this."""

    def __init__(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol], sock: socket.socket,
                 ssl_context: Optional[ssl.SSLContext], backlog: int) -> None:
        self._loop, self._factory, self._sock, self._ssl, self._backlog = loop, factory, sock, ssl_context, backlog
        self._retry: Optional[asyncio.TimerHandle] = None
        self._serving = True
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(self._backlog):  # as many as are waiting, up to a backlog's worth a turn
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    _warn_once_in_a_while("cannot accept connections (%s); retrying in %g s", error.strerror or error, ACCEPT_RETRY_DELAY)
                    self._loop.remove_reader(self._sock.fileno())
                    self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume)
                    return
                log.debug("accept failed: %s", error)  # ECONNABORTED and the like: the next one may do
                continue
            conn.setblocking(False)
            self._loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as error:  # a TLS handshake that failed or timed out
            log.debug("connection not set up: %s", error)
            conn.close()

    def _resume(self) -> None:
        self._retry = None
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting (the socket itself is closed by its owner)."""
        if self._serving:
            self._serving = False
            if self._retry is not None:
                self._retry.cancel()
            else:
                self._loop.remove_reader(self._sock.fileno())

    async def wait_closed(self) -> None:
        """Nothing to wait for: connections are uvicorn's to finish."""


class _AcceptingLoop:
    """An event loop whose `create_server(sock=...)` (uvicorn's only call of it here) is an `_Acceptor`."""

    async def create_server(self, protocol_factory: Callable[[], asyncio.Protocol], *args: Any, sock: socket.socket,
                            ssl: Optional[ssl.SSLContext] = None, backlog: int = 100, **kwargs: Any) -> _Acceptor:
        return _Acceptor(self, protocol_factory, sock, ssl, backlog)  # type: ignore[arg-type]


_LoopClass = type("Loop", (_AcceptingLoop, uvloop.Loop if uvloop is not None else asyncio.SelectorEventLoop), {})


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where uvloop is installed, else asyncio's; either accepts with `_Acceptor`."""
    return _LoopClass()


@dataclass(frozen=True)
class Limits:
    """What one client, or many, may hold of the server."""

    max_requests: int = DEFAULT_MAX_REQUESTS  # in flight at once; 0 = no cap (as in exporter-toolkit)
    max_connections: int = 1024
    head_timeout: float = 10.0
    max_head_bytes: int = 32 * 1024
    keep_alive_timeout: float = 30.0
    write_stall_timeout: float = 30.0
    # Bytes of response a connection may queue before its writer waits. uvloop queues references to the snapshot's
    # bytes (no copy) and libuv sends them in C as the client reads, without the GIL: a scrape's whole body is one
    # step of the loop instead of a step (a GIL turn) per 64 KiB drained. asyncio's own transport would copy them,
    # so there the default (64 KiB) stays.
    write_queue: int = 256 * 1024 * 1024
    send_buffer: int = 4 * 1024 * 1024  # SO_SNDBUF of each connection (the kernel caps it at net.core.wmem_max); 0 = leave it

    @property
    def workers(self) -> int:
        """Threads that run the WSGI app: one per request in flight."""
        return self.max_requests or DEFAULT_MAX_REQUESTS


class _DebugLogger:
    """uvicorn's per-connection logger, with its warnings about clients ("Invalid HTTP request") moved to debug."""

    def __init__(self, target: logging.Logger) -> None:
        self._target = target
        self.level = target.getEffectiveLevel()

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target.debug(msg, *args, **kwargs)

    info = warning = debug

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target.error(msg, *args, **kwargs)

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        self._target.log(min(level, logging.DEBUG), msg, *args, **kwargs)


_OVER_CAPACITY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"


class _PassthroughConnection(h11.Connection):
    """h11's connection, handing a single piece of output (a response body chunk) back as given instead of copying it.

    `Connection.send` joins its output into new bytes, so every 1 MiB view of a snapshot became a 1 MiB allocation
    (its own mmap, with the fixed threshold of `memory.fix_mmap_threshold`) and a copy; asyncio's transport takes
    the view itself.
    """

    def send(self, event: Any) -> Any:
        pieces = self.send_with_data_passthrough(event)
        if pieces is None:
            return None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class _EdgeProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a connection cap, a whole-head deadline and a write-stall deadline."""

    limits: Limits = Limits()
    tally: "_Tally"  # open connections, across every event loop of one MetricsServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted = False
        self.conn = _PassthroughConnection(h11.SERVER, self.limits.max_head_bytes)
        self.logger = _DebugLogger(log)  # type: ignore[assignment]
        self._head_timer: Optional[asyncio.TimerHandle] = None
        self._stall_timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._counted = True
        open_now = self.tally.add(1)
        if open_now > self.limits.max_connections:
            log.debug("refusing a connection from %s: %d open", self._peer(), open_now - 1)
            transport.write(_OVER_CAPACITY)
            transport.close()
            return
        if uvloop is not None and self.limits.write_queue:
            transport.set_write_buffer_limits(high=self.limits.write_queue)
        self._queued, self._progress_at = 0, self.loop.time()
        if self.limits.write_stall_timeout > 0:
            self._stall_timer = self.loop.call_later(self.limits.write_stall_timeout / 4, self._check_writes)
        if self.limits.send_buffer:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.send_buffer)
                except OSError as error:
                    log.debug("cannot set SO_SNDBUF: %s", error)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._arm_head_timer()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if exc is not None:
            log.debug("connection from %s lost: %s", self._peer(), exc)
        self._cancel_head_timer()
        self._cancel_stall_timer()
        if self._counted:
            self._counted = False
            self.tally.add(-1)
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closing the connection from %s: request head not complete within %gs", self._peer(), self.limits.head_timeout)
            self.transport.abort()

    def _check_writes(self) -> None:
        """Every quarter of `write_stall_timeout`: abort the connection once its queued bytes have not gone down
        for `write_stall_timeout` (a client that stopped reading)."""
        self._stall_timer = None
        if self.transport.is_closing():
            return
        queued, now = self.transport.get_write_buffer_size(), self.loop.time()
        if queued == 0 or queued < self._queued:
            self._progress_at = now
        elif now - self._progress_at >= self.limits.write_stall_timeout:
            log.debug("aborting the response to %s: no write progress for %gs", self._peer(), self.limits.write_stall_timeout)
            self.transport.abort()
            return
        self._queued = queued
        self._stall_timer = self.loop.call_later(self.limits.write_stall_timeout / 4, self._check_writes)

    def _peer(self) -> str:
        return "%s:%d" % self.client if self.client else "?"


class _Tally:
    """A count shared by threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, delta: int) -> int:
        """Add `delta`; return the new count."""
        with self._lock:
            self.value += delta
            return self.value


class _InFlightLimit:
    """ASGI middleware answering 503 past `limit` requests in flight, as promhttp's `MaxRequestsInFlight` does."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = _Tally()  # the event loops' requests together
        self._refusal = f"Limit of concurrent requests reached ({limit}), try again later.\n".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        in_flight = self.in_flight.add(1)
        if self.limit and in_flight > self.limit:
            self.in_flight.add(-1)
            log.debug("refusing %s %s: %d requests in flight", scope["method"], scope["path"], in_flight - 1)
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(self._refusal)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": self._refusal})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.add(-1)


class _WSGIApp:
    """ASGI → WSGI: the app runs on a worker thread and returns its chunks; the event loop sends them.

    a2wsgi's `WSGIMiddleware` iterates the body on the worker thread with a thread-to-loop round trip per chunk, and
    holds that thread until a slow client has read the last byte. Our routes return lists of pre-rendered chunks,
    so here the thread only builds the list (a few ms) and is free again; a2wsgi still builds the environ and body.

    A request the app's `quick(environ)` says cannot block runs on the event loop itself: the two hand-offs (to a
    worker and back) are each a turn of the GIL, which under a poll means waiting behind the poll threads. Measured
    in bench/'s way (20 scrapers, polls running, A B B A against wsgiref, gzip p50): 68-118 ms through a worker
    (wsgiref 55-89 ms), 63-73 ms on the loop (wsgiref 98-102 ms).
    """

    def __init__(self, app: Any, workers: int) -> None:
        self.app = app
        self.quick = getattr(app, "quick", None)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics-http-worker")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, Body(loop, receive))  # type: ignore[arg-type]
        started: list[tuple[int, list[tuple[bytes, bytes]]]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
            started[:] = [(int(status.split(" ", 1)[0]), encoded)]
            return lambda data: None  # the legacy write() callable; our routes never use it

        def run() -> list[Any]:
            iterable = self.app(environ, start_response)
            try:
                return iterable if isinstance(iterable, list) else list(iterable)
            finally:
                getattr(iterable, "close", lambda: None)()

        if self.quick is not None and self.quick(environ):
            chunks = run()
        else:
            chunks = await loop.run_in_executor(self.executor, run)
        status, headers = started[0]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's unhandled errors as one log line: connection trouble at debug, anything else an error."""
    error = context.get("exception")
    message = context.get("message", "")
    if isinstance(error, (OSError, ssl.SSLError, EOFError)):
        log.debug("%s: %s", message, error)
    else:
        log.error("%s: %r", message, error)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit, as Go programs do at start; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:  # e.g. macOS with an unlimited hard limit
            log.debug("cannot raise RLIMIT_NOFILE from %d to %d: %s", soft, hard, error)
    return soft


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when the host is an IPv6 address), backlog 128."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # With a backlog of 5, twenty scrapers connecting at once overflow the accept queue and the dropped SYNs are
    # retried after 1 s (measured in bench/: p99 1.07 s with 5, 0.13 s with 128, for 20 parallel scrapers).
    sock = socket.create_server((host, port), family=family, backlog=128)
    sock.setblocking(False)
    return sock


class MetricsServer:
    """A WSGI app served by uvicorn on `loops` background threads (an event loop each, one listening socket),
    optionally over TLS.

    The socket is bound in the constructor (so `port` is known and a bind error is an `OSError` here); connections
    made before `start()` wait in the listen backlog. Each loop accepts from the socket and serves the connections it
    accepted; the limits hold for all of them together.
    """

    def __init__(
        self, app: Any, host: str, port: int, ssl_context: Optional[ssl.SSLContext] = None, limits: Optional[Limits] = None,
        loops: int = EVENT_LOOPS,
    ) -> None:
        self.limits = limits or Limits()
        self.socket = _bind(host, port)
        self._wsgi = _WSGIApp(app, self.limits.workers)
        self._connections = _Tally()
        protocol = type("EdgeProtocol", (_EdgeProtocol,), {"limits": self.limits, "tally": self._connections})
        edge = _InFlightLimit(self._wsgi, self.limits.max_requests)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start/stop banners; ours are in cli
        self._servers: list[uvicorn.Server] = []
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._serving: list[Any] = []
        self._listeners: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        for index in range(max(1, loops)):
            config = uvicorn.Config(
                edge, interface="asgi3", http=protocol, ws="none", lifespan="off", log_config=None, access_log=False,
                proxy_headers=False, server_header=False, timeout_keep_alive=int(max(1, self.limits.keep_alive_timeout)),
                h11_max_incomplete_event_size=self.limits.max_head_bytes, timeout_graceful_shutdown=1,
                ssl_context_factory=(lambda config, default: ssl_context) if ssl_context is not None else None,
            )
            server = uvicorn.Server(config)
            # Each loop thread runs asyncio's and uvicorn's code directly, with no frame of ours beneath it.
            loop = new_event_loop()
            loop.set_exception_handler(_log_loop_exception)
            # Its own descriptor of the one listening socket: uvicorn closes the sockets it served at shutdown.
            listener = self.socket.dup()
            listener.setblocking(False)
            self._listeners.append(listener)
            serving = server.serve(sockets=[listener])
            self._servers.append(server)
            self._loops.append(loop)
            self._serving.append(serving)
            self.threads.append(
                threading.Thread(target=loop.run_until_complete, args=(serving,), name=f"metrics-http-{index}", daemon=True)
            )

    @property
    def open_connections(self) -> int:
        """Connections open now, across the loops."""
        return self._connections.value

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self.socket.getsockname()[1])

    def start(self) -> "MetricsServer":
        """Serve on background threads, with the interpreter's thread switch interval shortened to SWITCH_INTERVAL."""
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        for thread in self.threads:
            thread.start()
        return self

    def close(self) -> None:
        """Stop serving: finish responses in progress (up to 1 s), close every connection and the socket."""
        for server in self._servers:
            server.should_exit = True
        deadline = time.monotonic() + 1.5  # uvicorn finishes responses for up to 1 s, then cancels them
        for thread, serving, loop in zip(self.threads, self._serving, self._loops):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
            elif thread.ident is None:
                serving.close()  # never started
            if not thread.is_alive():
                loop.close()
        for listener in self._listeners:
            listener.close()  # uvicorn closed those it served; a loop never started leaves its own
        self.socket.close()
        self._wsgi.executor.shutdown(wait=False)
