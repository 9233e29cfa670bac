"""A fake third-party API: a real HTTP server on loopback whose answers each test scripts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional, Union
from urllib.parse import parse_qs, urlsplit

import orjson


@dataclass
class Reply:
    """One scripted answer: status, body, headers, and optional slowness."""

    body: Union[bytes, str, dict, list] = b"{}"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drip_interval: float = 0.0
    content_length: Optional[int] = None  # -1: send no Content-Length and close after the body

    def payload(self) -> bytes:
        """The body as bytes (dicts and lists as JSON)."""
        if isinstance(self.body, (dict, list)):
            return orjson.dumps(self.body)
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass
class Request:
    """What the fake API received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""  # the query string exactly as received, for signature verifiers


Route = Union[Reply, Callable[[Request], Reply]]


class FakeAPI:
    """Serves `routes[path]` (a Reply, or a function of the Request) and records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.release = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: object) -> None:
                """Stay quiet."""

            def handle(self) -> None:
                """Serve, ignoring clients that hang up (tests do that on purpose)."""
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):
                    pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()},
                    {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length) if length else b"", url.query,
                )
                api.requests.append(request)
                route = api.routes.get(url.path)
                reply = Reply(b'{"error":"no route"}', 404) if route is None else route(request) if callable(route) else route
                if reply.delay:
                    api.release.wait(reply.delay)
                payload = reply.payload()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                if reply.content_length == -1:  # no length: the body ends when the connection closes
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(reply.content_length if reply.content_length is not None else len(payload)))
                self.end_headers()
                try:
                    if reply.drip_interval:
                        for i in range(len(payload)):
                            self.wfile.write(payload[i : i + 1])
                            self.wfile.flush()
                            if api.release.wait(reply.drip_interval):
                                break
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "/") -> str:
        """The URL of a path on this server."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def start(self) -> "FakeAPI":
        """Serve on a background thread."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Release slow replies and stop."""
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    """Poll `condition` until it is truthy; fail the test with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
