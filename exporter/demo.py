"""The demo API: a simulated inference platform on loopback, answering like a third-party metrics API.

`GET /api/v1/metrics?metric_type=model_inference|pod|container[&pod_name=…][&container_name=…]` returns service-level
figures per model service, pods with their containers nested (Kubernetes-style quantities), or a flat container list
whose `id` packs namespace/pod/container into one string. Values drift over time and pods churn now and then.
`POST /-/faults` with `{"mode": "status", "status": 503}` (or `invalid_json`, `hang`, `none`; optional `ratio` and
`metric_type`) makes it misbehave; `GET /-/faults` shows the current fault.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

import orjson

__all__ = ["DemoPlatform", "DemoServer", "Fault", "SERVICES"]

SERVICES = (
    ("chat", "llama-3.1-8b-instruct"),
    ("embed", "bge-large-en-v1.5"),
    ("rerank", "bge-reranker-v2-m3"),
    ("vision", "qwen2-vl-7b-instruct"),
)
NAMESPACE = "inference"
CONTAINERS = ("model-server", "metrics-agent")
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GiB = 1024**3
MiB = 1024**2


def _unit(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from its parts."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _suffix(*parts: object, length: int = 5) -> str:
    value = int(_unit(*parts) * 2**53)
    out = []
    for _ in range(length):
        value, index = divmod(value, len(_ALPHABET))
        out.append(_ALPHABET[index])
    return "".join(out)


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Fault:
    """A misbehaviour the demo API shows on some share of its requests (or, with `window`, of its polls)."""

    mode: str = "none"
    status: int = 503
    ratio: float = 1.0
    metric_type: Optional[str] = None
    hang_seconds: float = 30.0
    # Seconds one decision holds per metric_type: a poll's retries then meet the same answer, so a ratio fails whole
    # polls rather than single requests that retries absorb (0: decide per request).
    window: float = 0.0
    _decisions: dict[str, tuple[float, bool]] = field(default_factory=dict, repr=False, compare=False)

    def applies(self, metric_type: str, rng: random.Random, now: Optional[float] = None) -> bool:
        """Whether this request should misbehave."""
        if self.mode == "none" or (self.metric_type and self.metric_type != metric_type):
            return False
        if self.window <= 0:
            return rng.random() < self.ratio
        now = time.monotonic() if now is None else now
        until, failing = self._decisions.get(metric_type, (float("-inf"), False))
        if now >= until:
            failing = rng.random() < self.ratio
            self._decisions[metric_type] = (now + self.window, failing)
        return failing

    def describe(self) -> dict[str, Any]:
        """The fault's settings, as `GET /-/faults` shows them."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class _Pod:
    index: int
    service: str
    generation: int = 0
    name: str = ""
    started: float = 0.0


@dataclass
class DemoPlatform:
    """The simulated platform's state: services, pods (two containers each) and their drifting load."""

    pods: int = 12
    seed: int = 1
    churn_interval: float = 60.0
    churn_ratio: float = 0.05
    clock: Any = time.time
    _pods: list[_Pod] = field(default_factory=list, init=False)
    _epoch: int = field(default=0, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _cache: dict[tuple, tuple[int, bytes]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        start = self.clock()
        self._epoch = int(start // self.churn_interval)
        for i in range(self.pods):
            service = SERVICES[i % len(SERVICES)][0]
            pod = _Pod(i, service, 0, started=start - 3600 * _unit(self.seed, "age", i))
            pod.name = self._name(pod)
            self._pods.append(pod)

    def _name(self, pod: _Pod) -> str:
        template = _suffix(self.seed, pod.service, "rs", length=9)
        return f"{pod.service}-{template}-{_suffix(self.seed, pod.index, pod.generation)}"

    def _advance(self, now: float) -> None:
        epoch = int(now // self.churn_interval)
        while self._epoch < epoch:
            self._epoch += 1
            for pod in self._pods:
                if _unit(self.seed, "churn", pod.index, self._epoch) < self.churn_ratio:
                    pod.generation += 1
                    pod.name = self._name(pod)
                    pod.started = self._epoch * self.churn_interval

    def pod_names(self) -> list[str]:
        """The names of the pods running now."""
        with self._lock:
            self._advance(self.clock())
            return [p.name for p in self._pods]

    def body(self, metric_type: str, pod_name: Optional[str] = None, container_name: Optional[str] = None) -> bytes:
        """The JSON response for one query, rebuilt at most once a second."""
        now = self.clock()
        key = (metric_type, pod_name, container_name)
        with self._lock:
            self._advance(now)
            cached = self._cache.get(key)
            if cached is not None and cached[0] == int(now):
                return cached[1]
            pods = [p for p in self._pods if pod_name in (None, p.name)]
        if metric_type == "model_inference":
            document: Any = self._services(now)
        elif metric_type == "pod":
            document = self._pod_list(pods, now, container_name)
        elif metric_type == "container":
            document = self._container_list(pods, now, container_name)
        else:
            raise KeyError(metric_type)
        data = orjson.dumps(document)
        with self._lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = (int(now), data)
        return data

    def _wave(self, now: float, *parts: object, period: float = 300.0) -> float:
        phase = _unit(self.seed, "phase", *parts) * 2 * math.pi
        return 0.5 + 0.5 * math.sin(now / period * 2 * math.pi + phase)

    def _services(self, now: float) -> dict[str, Any]:
        services = []
        for name, model in SERVICES:
            load = self._wave(now, name)
            replicas = sum(1 for p in self._pods if p.service == name)
            rps = round((5 + 60 * load) * max(replicas, 1) / 3, 2)
            p50 = 0.05 + 0.25 * load
            services.append(
                {
                    "service": name,
                    "model": model,
                    "namespace": NAMESPACE,
                    "status": "READY" if replicas else "UNAVAILABLE",
                    "replicas": replicas,
                    "requests_per_second": rps,
                    "requests_served": int(now * (5 + 30 * _unit(self.seed, name))) % 10**12,
                    "latency": {"p50": f"{p50 * 1000:.0f}ms", "p99": f"{p50 * (3 + 2 * load):.3f}s"},
                    "error_rate": f"{0.2 + 2.5 * self._wave(now, name, 'err', period=90):.2f}%",
                    "tokens_per_second": f"{int(rps * (180 if name == 'chat' else 40)):,}",
                    "queue_depth": int(12 * load * load),
                }
            )
        return {"generated_at": _rfc3339(now), "services": services}

    def _container(self, pod: _Pod, container: str, now: float) -> dict[str, Any]:
        main = container == CONTAINERS[0]
        load = self._wave(now, pod.index, container, period=120)
        limit = (16 if main else 1) * GiB
        used = limit * (0.35 + 0.55 * load) if main else 90 * MiB * (1 + 0.2 * load)
        gpu = 0.2 + 0.78 * load if main and pod.service != "embed" else (0.1 + 0.3 * load if main else 0.0)
        return {
            "name": container,
            "cpu": f"{int((1800 if main else 40) * (0.3 + 0.7 * load))}m",
            "memory": f"{int(used / 1024)}Ki",
            "memory_limit": f"{limit // GiB}Gi" if main else f"{limit // MiB}Mi",
            "gpu_utilization": f"{gpu * 100:.1f}%",
            "gpu_memory_used": int(22 * GiB * gpu) if main else 0,
            "restarts": int(_unit(self.seed, "restarts", pod.index, pod.generation, container) ** 4 * 4),
        }

    def _pod_list(self, pods: list[_Pod], now: float, container_name: Optional[str]) -> dict[str, Any]:
        items = []
        for pod in pods:
            containers = [self._container(pod, c, now) for c in CONTAINERS if container_name in (None, c)]
            main = containers[0] if containers else None
            items.append(
                {
                    "metadata": {
                        "name": pod.name,
                        "namespace": NAMESPACE,
                        "labels": {"app": pod.service},
                        "creationTimestamp": _rfc3339(pod.started),
                    },
                    "node": f"gpu-node-{pod.index % 8}",
                    "phase": "Running",
                    "usage": {
                        "cpu": f"{sum(int(c['cpu'][:-1]) for c in containers)}m",
                        "memory": str(sum(int(c["memory"][:-2]) * 1024 for c in containers)),
                    },
                    "gpu": {
                        "utilization": main["gpu_utilization"].replace("%", " %") if main else "0 %",
                        "memory_used": f"{(main['gpu_memory_used'] if main else 0) // MiB}Mi",
                    },
                    "containers": [
                        {"name": c["name"], "restartCount": c["restarts"], "limits": {"memory": c["memory_limit"]}}
                        for c in containers
                    ],
                }
            )
        return {"kind": "PodMetricsList", "generated_at": _rfc3339(now), "items": items}

    def _container_list(self, pods: list[_Pod], now: float, container_name: Optional[str]) -> dict[str, Any]:
        rows = []
        for pod in pods:
            for container in CONTAINERS:
                if container_name not in (None, container):
                    continue
                c = self._container(pod, container, now)
                rows.append(
                    {
                        "id": f"{NAMESPACE}/{pod.name}/{container}",
                        "cpu_nanocores": int(c["cpu"][:-1]) * 1_000_000,
                        "memory_working_set": c["memory"],
                        "gpu": {"util": c["gpu_utilization"], "mem_used_bytes": c["gpu_memory_used"]},
                    }
                )
        return {"timestamp_ms": int(now * 1000), "containers": rows}


class DemoServer:
    """The demo platform served over HTTP on a background thread."""

    def __init__(self, platform: DemoPlatform, host: str = "127.0.0.1", port: int = 0, fault: Optional[Fault] = None) -> None:
        self.platform = platform
        self.fault = fault or Fault()
        self.requests = 0
        self._rng = random.Random(platform.seed)
        self._hang = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                """Answer a metrics query or show the current fault."""
                url = urlsplit(self.path)
                if url.path == "/-/faults":
                    self._send(200, orjson.dumps(server.fault.describe()))
                    return
                if url.path != "/api/v1/metrics":
                    self._send(404, b'{"error": "not found"}')
                    return
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                metric_type = query.get("metric_type", "model_inference")
                server.requests += 1
                fault = server.fault
                if fault.applies(metric_type, server._rng):
                    if fault.mode == "status":
                        self._send(fault.status, b'{"error": "injected failure"}')
                        return
                    if fault.mode == "invalid_json":
                        self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
                        return
                    if fault.mode == "hang":
                        server._hang.wait(fault.hang_seconds)
                        self._send(503, b'{"error": "hung"}')
                        return
                try:
                    body = server.platform.body(metric_type, query.get("pod_name"), query.get("container_name"))
                except KeyError:
                    self._send(400, b'{"error": "metric_type must be model_inference, pod or container"}')
                    return
                self._send(200, body)

            def do_POST(self) -> None:
                """Set the fault: `{"mode": "status"|"invalid_json"|"hang"|"none", "status": 503, "ratio": 1.0}`."""
                if urlsplit(self.path).path != "/-/faults":
                    self._send(404, b'{"error": "not found"}')
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    spec = orjson.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(spec, dict) or any(k.startswith("_") for k in spec):
                        raise TypeError("the fault is a JSON object of mode, status, ratio, metric_type, hang_seconds, window")
                    server.fault = Fault(**spec)
                except (orjson.JSONDecodeError, TypeError) as exc:
                    self._send(400, orjson.dumps({"error": str(exc)}))
                    return
                self._send(200, orjson.dumps(server.fault.describe()))

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="demo-api", daemon=True)

    @property
    def url(self) -> str:
        """The metrics endpoint's URL."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/api/v1/metrics"

    def start(self) -> "DemoServer":
        """Serve on a background thread."""
        self.thread.start()
        return self

    def close(self) -> None:
        """Stop serving; release any hanging requests."""
        self._hang.set()
        self.httpd.shutdown()
        self.httpd.server_close()
