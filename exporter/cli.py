"""Command line: `metrics-bridge run|check|try|demo`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence

import orjson

from . import __version__
from .bridge import Bridge
from .collector import render_exposition
from .config import Config, ConfigError, load_config, parse_config
from .logsetup import configure_logging
from .mapping import MappingError
from .httpserver import DEFAULT_MAX_REQUESTS, Limits, raise_open_files_limit
from .memory import limit_arenas
from .server import MetricsServer, create_app, parse_listen
from .webconfig import Authenticator, load_web_config

__all__ = ["main", "build_parser"]

log = logging.getLogger("exporter")
DEFAULT_LISTEN = "0.0.0.0:9877"
LIFECYCLE_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else default


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with every default shown in --help."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="metrics-bridge",
        description="Poll third-party HTTP/JSON APIs and serve their numbers as Prometheus metrics.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"metrics-bridge {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"], help="log level")
    common.add_argument("--log-format", default="text", choices=["text", "json"], help="log line format")
    common.add_argument("--log-file", default=None, help="also log to this file, rotated at 10 MiB (5 kept)")
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", default=os.environ.get("METRICS_BRIDGE_CONFIG"), required="METRICS_BRIDGE_CONFIG" not in os.environ,
        help="YAML config file (env METRICS_BRIDGE_CONFIG)",
    )
    serve = argparse.ArgumentParser(add_help=False)
    serve.add_argument("--web.listen-address", "--listen", dest="listen", default=DEFAULT_LISTEN, help="HOST:PORT to serve on (--listen is an older alias)")
    serve.add_argument(
        "--web.config.file", "--web-config-file", dest="web_config_file", default=None,
        help="YAML with tls_server_config and basic_auth_users (bcrypt) for every endpoint but /healthz (--web-config-file is an older alias)",
    )
    serve.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", help="path under which to expose metrics")
    serve.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true", help="enable POST /-/reload (off: 403)")
    serve.add_argument(
        "--web.max-requests", dest="max_requests", type=int, default=DEFAULT_MAX_REQUESTS,
        help="maximum requests in flight; past it HTTP 503 (0: no limit)",
    )
    serve.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds in-flight polls get to finish on SIGTERM")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[config, serve, common], formatter_class=fmt, help="poll the configured targets and serve /metrics")
    run.add_argument("--shard", type=int, default=_env_int("METRICS_BRIDGE_SHARD", 0), help="this replica's shard, 0-based (env METRICS_BRIDGE_SHARD)")
    run.add_argument(
        "--total-shards", type=int, default=_env_int("METRICS_BRIDGE_TOTAL_SHARDS", 1),
        help="number of replicas sharing the targets (env METRICS_BRIDGE_TOTAL_SHARDS)",
    )
    sub.add_parser("check", parents=[config, common], formatter_class=fmt, help="validate a config file and exit")
    trial = sub.add_parser("try", parents=[config, common], formatter_class=fmt, help="print the exposition one target's mapping makes")
    trial.add_argument("--target", required=True, help="target name in the config")
    trial.add_argument("--input", default=None, help="a saved JSON response ('-' for stdin); without it, fetch the target once")
    demo = sub.add_parser("demo", parents=[serve, common], formatter_class=fmt, help="run the built-in demo API and a bridge polling it")
    demo.add_argument("--pods", type=int, default=12, help="simulated pods (two containers each; about 18 series per pod)")
    demo.add_argument("--api-listen", default="127.0.0.1:0", help="HOST:PORT for the demo API (port 0 picks a free one)")
    demo.add_argument("--fail-ratio", type=float, default=0.0, help="share of demo API requests answered with HTTP 503")
    demo.add_argument("--interval", type=float, default=None, help="override every demo target's poll interval, in seconds")
    demo.add_argument("--churn-interval", type=float, default=60.0, help="seconds between pod replacements")
    return parser


def _load(path: str) -> Optional[Config]:
    try:
        return load_config(path)
    except ConfigError as error:
        print(f"metrics-bridge: invalid configuration {error.source}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config; print a summary or every problem."""
    config = _load(args.config)
    if config is None:
        return 1
    metrics = {m.name for t in config.targets for mp in t.mappings for m in mp.metrics}
    print(f"{args.config}: OK — {len(config.targets)} target(s), {len(metrics)} metric name(s)")
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    """Map one saved (or freshly fetched) response with one target's mappings and print the exposition."""
    from .client import FetchError, Redactor, TargetClient
    from .mapping import Mapper
    from .poller import Poller, describe_failure
    from .store import Snapshot
    from .verdict import ApiError, verdict_for

    config = _load(args.config)
    if config is None:
        return 1
    target = next((t for t in config.targets if t.name == args.target), None)
    if target is None:
        print(f"metrics-bridge: no target {args.target!r}; the config has: {', '.join(t.name for t in config.targets)}", file=sys.stderr)
        return 1
    mapper = Mapper(target)
    redactor = Redactor(target)
    verdict = verdict_for(target.api_error)
    try:
        if args.input:
            raw = sys.stdin.buffer.read() if args.input == "-" else Path(args.input).read_bytes()
            documents = [orjson.loads(raw)]
        else:
            client = TargetClient(target)
            redactor = client.redactor  # it also knows the page tokens this poll saw and the credentials it obtained
            try:
                documents = client.fetch().documents
            finally:
                client.close()
        result = mapper.new_result()
        for document in documents:
            if verdict is not None:
                verdict.check(document)
            mapper.map(document, result)
    except (OSError, orjson.JSONDecodeError) as error:
        print(f"metrics-bridge: cannot read {args.input}: {error}", file=sys.stderr)
        return 1
    except (FetchError, MappingError, ApiError) as error:
        # The message may quote values from the response, which can echo a credential back.
        reason, message = describe_failure(error, redactor)
        if isinstance(error, ApiError):
            what = "api_error"
        elif isinstance(error, MappingError):
            what = "mapping failed" if reason == "mapping" else f"mapping failed ({reason})"
        else:
            what = f"fetch failed ({reason})"
        print(f"metrics-bridge: {what}: {message}", file=sys.stderr)
        return 1
    headers = Poller.family_headers(target)
    snapshot = Snapshot.build(target.name, result, headers, float("inf"))
    sys.stdout.buffer.write(b"".join(render_exposition({target.name: snapshot})))
    notes = []
    if result.duplicates:
        notes.append(f"{result.duplicates} duplicate sample(s) replaced")
    if result.missing_values:
        notes.append(f"{result.missing_values} sample(s) skipped for a missing value")
    if result.invalid_counters:
        notes.append(f"{result.invalid_counters} negative or NaN counter sample(s) dropped")
    print(f"# {snapshot.series} series" + (f"; {'; '.join(notes)}" if notes else ""), file=sys.stderr)
    return 0


def serve_bridge(
    bridge: Bridge, args: argparse.Namespace, config_path: Optional[str], on_listening: Optional[Callable[[int], None]] = None
) -> int:
    """Run a bridge and its server until SIGTERM or SIGINT; SIGHUP reloads `config_path`.

    Call from the main thread with `block_lifecycle_signals()` done before any thread started (`main` does).
    """
    limit_arenas(2)  # what MALLOC_ARENA_MAX=2 does in the image, for `run` started any other way
    listen, grace = args.listen, args.shutdown_grace
    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        print(f"metrics-bridge: --web.listen-address: {error}", file=sys.stderr)
        return 2
    ssl_context = None
    authenticator = None
    if args.web_config_file:
        try:
            web = load_web_config(args.web_config_file)
        except ConfigError as error:
            print(f"metrics-bridge: invalid web config {error.source}:", file=sys.stderr)
            for problem in error.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        ssl_context = web.ssl_context()
        authenticator = Authenticator(web.basic_auth_users)
    if not args.telemetry_path.startswith("/") or args.max_requests < 0:
        print("metrics-bridge: --web.telemetry-path must start with / and --web.max-requests be 0 or more", file=sys.stderr)
        return 2
    raise_open_files_limit()
    app = create_app(bridge, config_path, authenticator, lifecycle=args.enable_lifecycle, telemetry_path=args.telemetry_path)
    try:
        server = MetricsServer(app, host, port, ssl_context, Limits(max_requests=args.max_requests))
    except OSError as error:
        log.error("cannot listen on %s: %s", listen, error.strerror or error)
        return 1
    server.start()
    if on_listening is not None:
        on_listening(server.port)
    try:
        bridge.start()
    except ConfigError:
        server.close()
        raise
    log.info(
        "serving metrics on %s://%s:%d%s%s", "https" if ssl_context else "http", host, server.port, args.telemetry_path,
        " (basic auth)" if authenticator and authenticator.enabled else "",
    )
    received = wait_for_stop_signal(bridge, config_path)
    log.info("%s received: stopping (in-flight polls get up to %gs)", received, grace)
    finished = bridge.stop(grace)
    server.close()
    log.info("stopped%s", "" if finished else "; polls still running were abandoned")
    return 0


def block_lifecycle_signals() -> None:
    """Block SIGTERM, SIGINT and SIGHUP here and in every thread started later: only `sigwait` receives them.

    With handlers instead, Linux may deliver a signal to any thread, and the main thread asleep in a wait learns of
    it only when something else wakes it (a lost SIGHUP was measured to run 6-7 s late). Call before any thread starts.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, LIFECYCLE_SIGNALS)


def wait_for_stop_signal(bridge: Bridge, config_path: Optional[str]) -> str:
    """Reload on each SIGHUP until SIGTERM or SIGINT comes; return the name of the signal that stopped us."""
    block_lifecycle_signals()
    while True:
        signum = signal.sigwait(LIFECYCLE_SIGNALS)
        if signum != signal.SIGHUP:
            return signal.Signals(signum).name
        if config_path:
            log.info("SIGHUP received: reloading %s", config_path)
            bridge.reload_from_file(config_path)
        else:
            log.info("SIGHUP received: no config file to reload")


def cmd_run(args: argparse.Namespace) -> int:
    """Poll the configured targets and serve /metrics."""
    config = _load(args.config)
    if config is None:
        return 1
    if not 0 <= args.shard < args.total_shards:
        print(f"metrics-bridge: --shard must be in 0..{args.total_shards - 1}", file=sys.stderr)
        return 2
    bridge = Bridge(config, shard=args.shard, total_shards=args.total_shards)
    try:
        return serve_bridge(bridge, args, args.config)
    except ConfigError as error:  # a target that validated but cannot be set up
        print(f"metrics-bridge: cannot start with {args.config}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1


def demo_config_text() -> str:
    """The bundled demo configuration."""
    return resources.files("exporter").joinpath("demo.yaml").read_text(encoding="utf-8")


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the demo API and a bridge polling it."""
    from .demo import DemoPlatform, DemoServer, Fault

    api_host, api_port = parse_listen(args.api_listen)
    fault = Fault(mode="status", status=503, ratio=args.fail_ratio) if args.fail_ratio > 0 else None
    api = DemoServer(DemoPlatform(pods=args.pods, churn_interval=args.churn_interval), api_host, api_port, fault).start()
    os.environ["METRICS_BRIDGE_DEMO_URL"] = api.url
    try:
        config = parse_config(demo_config_text(), "demo.yaml")
        if args.interval:
            config = config.model_copy(
                update={
                    "targets": [
                        t.model_copy(update={"interval": args.interval, "timeout": min(t.timeout, args.interval)})
                        for t in config.targets
                    ]
                }
            )
    except ConfigError as error:  # the bundled config is tested; this is a packaging fault
        print(error, file=sys.stderr)
        return 1

    def banner(port: int) -> None:
        print(
            f"metrics-bridge demo: simulated inference platform API at {api.url} ({args.pods} pods)\n"
            f"  metrics:  curl http://localhost:{port}/metrics\n"
            f"  status:   http://localhost:{port}/\n"
            f"  faults:   curl -X POST -d '{{\"mode\": \"status\", \"status\": 503}}' {api.url.rsplit('/api/', 1)[0]}/-/faults\n"
            "  stop:     Ctrl-C",
            file=sys.stderr,
            flush=True,
        )

    try:
        return serve_bridge(Bridge(config), args, None, banner)
    finally:
        api.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `metrics-bridge` console script."""
    args = build_parser().parse_args(argv)
    if args.command in ("run", "demo"):
        block_lifecycle_signals()
    configure_logging(args.log_level, args.log_format, args.log_file)
    handlers = {"run": cmd_run, "check": cmd_check, "try": cmd_try, "demo": cmd_demo}
    return handlers[args.command](args)
