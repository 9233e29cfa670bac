"""The benchmark's third-party APIs, each run as its own process so their CPU and memory stay out of the bridge's.

    python bench/api_server.py demo --pods 11112     # the demo API, its clock frozen so every poll gets the same bytes
    python bench/api_server.py schedule --hang 30     # /ok answers at once; /hang holds the request until the client leaves

Each prints one JSON line (`{"url": ...}`) when it is listening, then serves until its standard input closes.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from exporter.demo import DemoPlatform, DemoServer  # noqa: E402


def serve_demo(pods: int) -> tuple[str, Any]:
    """The demo API with a frozen clock: bodies are built once per query and then served from its cache.

    Its sockets get TCP_NODELAY, as Go's net/http and nginx set by default: http.server writes headers and body
    separately, and without it a small body waits ~40 ms for the bridge's delayed ACK on a kept-alive connection,
    which would be counted against the bridge.
    """
    frozen = time.time()
    platform = DemoPlatform(pods=pods, clock=lambda: frozen)
    server = DemoServer(platform)
    server.httpd.RequestHandlerClass.disable_nagle_algorithm = True  # this server's own handler class
    server.start()
    for metric_type in ("model_inference", "pod", "container"):
        platform.body(metric_type)  # warm the cache before the bridge's first poll
    return server.url, server.close


class ScheduleAPI:
    """Answers `/ok?target=NAME` with a small services document and counts it; `/hang` never answers in time."""

    def __init__(self, hang_seconds: float) -> None:
        self.counts: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.body = DemoPlatform(pods=8).body("model_inference")
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as in serve_demo: no 40 ms wait for a delayed ACK per poll

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                """Serve /ok, /hang or /counts."""
                url = urlsplit(self.path)
                target = parse_qs(url.query).get("target", ["?"])[0]
                if url.path == "/ok":
                    with api.lock:
                        api.counts.setdefault(target, []).append(time.monotonic())
                    self._send(200, api.body)
                elif url.path == "/hang":
                    api.release.wait(hang_seconds)
                    self.close_connection = True
                    self._send(503, b'{"error": "hung"}')
                elif url.path == "/counts":
                    with api.lock:
                        self._send(200, orjson.dumps({k: len(v) for k, v in api.counts.items()}))
                else:
                    self._send(404, b"{}")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="schedule-api", daemon=True).start()

    def close(self) -> None:
        """Release hanging requests and stop."""
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> int:
    """Start the chosen API, print its URL, serve until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    demo = sub.add_parser("demo")
    demo.add_argument("--pods", type=int, required=True)
    schedule = sub.add_parser("schedule")
    schedule.add_argument("--hang", type=float, default=30.0, help="longest a /hang request is held, in seconds")
    args = parser.parse_args()
    if args.kind == "demo":
        url, close = serve_demo(args.pods)
    else:
        api = ScheduleAPI(args.hang)
        host, port = api.httpd.server_address[:2]
        url, close = f"http://{host}:{port}", api.close
    print(orjson.dumps({"url": url}).decode(), flush=True)
    sys.stdin.read()  # the benchmark closes our stdin (or dies) when it is done with us
    close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
