"""The HTTP server metrics-bridge used before uvicorn (prometheus_client's thread-per-connection wsgiref server),
kept only so that bench/run.py can measure the old and the new server side by side on the same bridge and snapshots.
"""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler


class _Handler(_SilentHandler):
    """A quiet request handler that drops connections idle for 30 s."""

    timeout = 30


class _BackloggedServer(ThreadingWSGIServer):
    """prometheus_client's threaded WSGI server with a listen backlog of 128."""

    request_queue_size = 128


def whole_chunks(app: Any) -> Any:
    """The app with its zero-copy views of a chunk (cut for the new server) given back as that chunk, as before."""

    def wrapped(environ: dict, start_response: Any) -> list[bytes]:
        out: list[bytes] = []
        for chunk in app(environ, start_response):
            if isinstance(chunk, memoryview):
                if not out or out[-1] is not chunk.obj:
                    out.append(chunk.obj)
            else:
                out.append(chunk)
        return out

    return wrapped


class LegacyServer:
    """The old `MetricsServer`: a thread per connection, no caps, no head deadline."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self.httpd = make_server(host, port, whole_chunks(app), _BackloggedServer, handler_class=_Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="legacy-http", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self.httpd.server_address[1])

    def start(self) -> "LegacyServer":
        """Serve on a background thread."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
