"""One concurrent scraper in its own process, as each Prometheus is its own process.

    python bench/scraper.py --port 9100 --seconds 15 --expect 200012 [--gzip]

Prints `{"ready": true}`, waits for a line on standard input (the driver starts every scraper at once), then scrapes
`GET /metrics` in a loop on fresh connections for `--seconds` and prints one JSON line: `{"times": [...], "errors":
[...]}`. Every response must be HTTP 200 with its whole body (its Content-Length or chunks); every fourth one is
also decoded and must hold exactly `--expect` bridged samples.

The body is read with `readinto` into one buffer kept across scrapes: the socket's data is copied once, with the
GIL released. Twenty scraper threads in the driver's process measured that process's GIL more than the server:
at 200k series, with no poll running, plain p50 884 ms as threads, 363 ms as processes (same server, same run).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import sys
import time

import orjson

BRIDGED_PREFIX = b"\ninference_"  # every series the demo config bridges starts with this


def scrape_into(port: int, use_gzip: bool, buffer: bytearray, timeout: float = 60.0) -> tuple[float, int, memoryview, str]:
    """GET /metrics on a fresh connection into `buffer` (grown as needed): seconds from connect to the last byte,
    the status, a view of the body and its Content-Encoding."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.perf_counter()
    try:
        connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"} if use_gzip else {})
        response = connection.getresponse()
        length = response.length
        if length is not None and len(buffer) < length:
            buffer.extend(bytes(length - len(buffer)))
        view, filled = memoryview(buffer), 0
        while True:
            if filled == len(buffer):  # chunked, or longer than announced: grow and go on
                view.release()
                buffer.extend(bytes(max(1 << 20, len(buffer))))
                view = memoryview(buffer)
            with view[filled:] as rest:
                count = response.readinto(rest)
            if not count:
                break
            filled += count
        seconds = time.perf_counter() - started
        if length is not None and filled != length:
            raise http.client.IncompleteRead(bytes(0), length - filled)
        return seconds, response.status, view[:filled], response.getheader("Content-Encoding") or ""
    finally:
        connection.close()


def bridged_samples(body: memoryview, encoding: str) -> int:
    """How many bridged sample lines a body holds (decompressed first when gzipped)."""
    data = gzip.decompress(body) if encoding == "gzip" else body.tobytes()
    return data.count(BRIDGED_PREFIX)


def main(argv: list[str] | None = None) -> int:
    """Scrape in a loop once the driver says go; print the times and the errors."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--expect", type=int, default=-1, help="bridged samples every decoded scrape must hold")
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args(argv)
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    sys.stdin.readline()
    buffer = bytearray()
    times: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < deadline:
        try:
            seconds, status, body, encoding = scrape_into(args.port, args.gzip, buffer)
            problem = "" if status == 200 else f"HTTP {status}"
            if not problem and (encoding == "gzip") != args.gzip:
                problem = f"Content-Encoding {encoding!r}"
            if not problem and n % 4 == 0 and args.expect >= 0 and bridged_samples(body, encoding) != args.expect:
                problem = "incomplete exposition"
        except (OSError, http.client.HTTPException, EOFError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            body.release()  # the buffer is resized by the next scrape only when nothing views it
        if problem:
            errors.append(problem)
        else:
            times.append(seconds)
        n += 1
    print(orjson.dumps({"times": times, "errors": errors}).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
