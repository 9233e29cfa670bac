"""Command line: `metrics-bridge run|check|try|demo`."""

from __future__ import annotations

import argparse
import json
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
from .config import Config, ConfigError, Target, load_config, parse_config
from .logsetup import configure_logging
from .mapping import MappingError
from .httpserver import DEFAULT_MAX_REQUESTS, Limits, raise_open_files_limit
from .memory import fix_mmap_threshold, limit_arenas
from .server import MetricsServer, create_app, parse_listen
from .webconfig import Authenticator, load_web_config

__all__ = ["main", "build_parser"]

log = logging.getLogger("exporter")
DEFAULT_LISTEN = "0.0.0.0:9877"
LIFECYCLE_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else default


def _duration(text: str) -> float:
    """A flag's duration (`5m`, `30s`, a number of seconds)."""
    from .convert import ConversionError, parse_duration

    try:
        seconds = parse_duration(text)
    except ConversionError as error:
        raise argparse.ArgumentTypeError(f"{error} (use a number of seconds, or 30s, 5m, 1h)") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return seconds


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
    serve.add_argument(
        "--summary-interval", type=_duration, default="5m",
        help="how often an INFO line sums up the targets (up, failing and why) and the series served; 0: never",
    )

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", parents=[config, serve, common], formatter_class=fmt, help="poll the configured targets and serve /metrics")
    run.add_argument("--shard", type=int, default=_env_int("METRICS_BRIDGE_SHARD", 0), help="this replica's shard, 0-based (env METRICS_BRIDGE_SHARD)")
    run.add_argument(
        "--total-shards", type=int, default=_env_int("METRICS_BRIDGE_TOTAL_SHARDS", 1),
        help="number of replicas sharing the targets (env METRICS_BRIDGE_TOTAL_SHARDS)",
    )
    check = sub.add_parser("check", parents=[config, common], formatter_class=fmt, help="validate a config file and exit")
    check.add_argument(
        "--syntax-only", action="store_true",
        help="check everything but the files and environment variables the config refers to (for CI without secrets)",
    )
    check.add_argument("--target", default=None, help="with --input: the target whose saved response it is")
    check.add_argument("--input", action="append", default=[], help="a saved JSON response (repeat for pages): say what each mapping finds in it")
    check.add_argument("--fail-on-warnings", action="store_true", help="exit 1 when a path of a mapping matches nothing in --input")
    trial = sub.add_parser("try", parents=[config, common], formatter_class=fmt, help="print the exposition one target's mapping makes")
    trial.add_argument("--target", required=True, help="target name in the config")
    trial.add_argument(
        "--input", action="append", default=[], help="a saved JSON response ('-' for stdin; repeat for pages); without it, fetch the target once",
    )
    trial.add_argument("--show-compiled", action="store_true", help="print the Python the target's mappings compile to, and exit (nothing is fetched)")
    trial.add_argument("--save", default=None, help="without --input: also save the fetched response to this file (pages: FILE-1, FILE-2, ...)")
    trial.add_argument("--fail-on-warnings", action="store_true", help="exit 1 when a path of a mapping matches nothing (for CI)")
    demo = sub.add_parser("demo", parents=[serve, common], formatter_class=fmt, help="run the built-in demo API and a bridge polling it")
    demo.add_argument("--pods", type=int, default=12, help="simulated pods (two containers each; about 18 series per pod)")
    demo.add_argument("--api-listen", default="127.0.0.1:0", help="HOST:PORT for the demo API (port 0 picks a free one)")
    demo.add_argument(
        "--fail-ratio", type=float, default=0.0,
        help="share of polls the demo API fails with HTTP 503 (one decision per poll, so retries do not hide it)",
    )
    demo.add_argument("--interval", type=float, default=None, help="override every demo target's poll interval, in seconds")
    demo.add_argument("--churn-interval", type=float, default=60.0, help="seconds between pod replacements")
    return parser


def _print_problems(error: ConfigError) -> None:
    print(f"metrics-bridge: invalid configuration {error.source}:", file=sys.stderr)
    print(error.listing(), file=sys.stderr)


def _load(path: str, syntax_only: bool = False) -> Optional[Config]:
    try:
        return load_config(path, syntax_only)
    except ConfigError as error:
        _print_problems(error)
        return None


def _find_target(config: Config, name: str) -> Optional[Target]:
    target = next((t for t in config.targets if t.name == name), None)
    if target is None:
        print(f"metrics-bridge: no target {name!r}; the config has: {', '.join(t.name for t in config.targets)}", file=sys.stderr)
    return target


def _read_documents(paths: Sequence[str]) -> list[object]:
    """The saved responses (pages, in order) named by --input; '-' is stdin."""
    return [orjson.loads(sys.stdin.buffer.read() if p == "-" else Path(p).read_bytes()) for p in paths]


def _save_documents(documents: list[object], path: str) -> list[str]:
    """Write the fetched pages as JSON: FILE for one page, FILE-1, FILE-2 ... (before the suffix) for several."""
    base = Path(path)
    names = [base] if len(documents) == 1 else [base.with_name(f"{base.stem}-{i}{base.suffix}") for i in range(1, len(documents) + 1)]
    for name, document in zip(names, documents):
        try:
            text = orjson.dumps(document, option=orjson.OPT_INDENT_2)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            text = json.dumps(document, indent=2).encode()
        name.write_bytes(text + b"\n")
    return [str(n) for n in names]


def _explain(target: Target, documents: list[object], redact: Callable[[str], str]) -> int:
    """Print what each mapping matched and a warning per path that matched nothing; return the number of warnings."""
    from .explain import explain

    explanation = explain(target, documents)
    for counts in explanation.mappings:
        print(f"# {counts.describe()}", file=sys.stderr)
    for warning in explanation.warnings:
        print(f"metrics-bridge: warning: {target.name}: {redact(warning)}", file=sys.stderr)
    return len(explanation.warnings)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config; print a summary or every problem (and, with --input, what the mappings find in it)."""
    if args.input and not args.target:
        print("metrics-bridge: --input needs --target (the target whose saved response it is)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config, args.syntax_only or bool(args.input))
    except ConfigError as error:
        if not error.environment_only:
            _print_problems(error)
            return 1
        print(f"{args.config}: syntax OK — the environment variables {', '.join(_unset(error))} fill in the rest")
        return 0
    metrics = {m.name for t in config.targets for mp in t.mappings for m in mp.metrics}
    note = " (syntax only: files and environment variables not checked)" if args.syntax_only else ""
    print(f"{args.config}: OK — {len(config.targets)} target(s), {len(metrics)} metric name(s){note}")
    if not args.input:
        return 0
    from .client import Redactor

    target = _find_target(config, args.target)
    if target is None:
        return 1
    try:
        documents = _read_documents(args.input)
    except (OSError, orjson.JSONDecodeError) as error:
        print(f"metrics-bridge: cannot read {', '.join(args.input)}: {error}", file=sys.stderr)
        return 1
    warnings = _explain(target, documents, Redactor(target).redact)
    return 1 if warnings and args.fail_on_warnings else 0


def _unset(error: ConfigError) -> list[str]:
    """The variable names of a ConfigError about unset environment variables."""
    return sorted({p.rsplit("environment variable ", 1)[-1].split()[0] for p in error.problems})


def cmd_try(args: argparse.Namespace) -> int:
    """Map saved (or freshly fetched) responses with one target's mappings; print the exposition and what matched."""
    from .client import FetchError, Redactor, TargetClient
    from .mapping import Mapper
    from .poller import Poller, describe_failure
    from .store import Snapshot
    from .verdict import ApiError, verdict_for

    if args.input and args.save:
        print("metrics-bridge: --save keeps a fetched response; with --input nothing is fetched", file=sys.stderr)
        return 2
    config = _load(args.config, syntax_only=bool(args.input) or args.show_compiled)  # neither needs a secret
    if config is None:
        return 1
    target = _find_target(config, args.target)
    if target is None:
        return 1
    mapper = Mapper(target)
    if args.show_compiled:
        print(mapper.source, end="")
        return 0
    redactor = Redactor(target)
    verdict = verdict_for(target.api_error)
    try:
        if args.input:
            documents = _read_documents(args.input)
        else:
            client = TargetClient(target)
            redactor = client.redactor  # it also knows the page tokens this poll saw and the credentials it obtained
            try:
                documents = client.fetch().documents
            finally:
                client.close()
            if args.save:
                saved = _save_documents(documents, args.save)
                replay = " ".join(f"--input {name}" for name in saved)
                print(f"# saved {', '.join(saved)}; replay: metrics-bridge try --config {args.config} --target {target.name} {replay}", file=sys.stderr)
        result = mapper.new_result()
        for document in documents:
            if verdict is not None:
                verdict.check(document)
            mapper.map(document, result)
    except (OSError, orjson.JSONDecodeError) as error:
        print(f"metrics-bridge: cannot read {', '.join(args.input or [args.save])}: {error}", file=sys.stderr)
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
    sys.stdout.flush()
    warnings = _explain(target, documents, redactor.redact)
    notes = []
    if result.duplicates:
        notes.append(f"{result.duplicates} duplicate sample(s) replaced")
    if result.missing_values:
        notes.append(f"{result.missing_values} sample(s) skipped for a missing value")
    if result.invalid_counters:
        notes.append(f"{result.invalid_counters} negative or NaN counter sample(s) dropped")
    if warnings:
        notes.append(f"{warnings} warning(s)")
    print(f"# {snapshot.series} series" + (f"; {'; '.join(notes)}" if notes else ""), file=sys.stderr)
    return 1 if warnings and args.fail_on_warnings else 0


def serve_bridge(
    bridge: Bridge, args: argparse.Namespace, config_path: Optional[str], on_listening: Optional[Callable[[int], None]] = None
) -> int:
    """Run a bridge and its server until SIGTERM or SIGINT; SIGHUP reloads `config_path`.

    Call from the main thread with `block_lifecycle_signals()` done before any thread started (`main` does).
    """
    limit_arenas(2)  # what MALLOC_ARENA_MAX=2 does in the image, for `run` started any other way
    fix_mmap_threshold()
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
    bridge = Bridge(config, shard=args.shard, total_shards=args.total_shards, summary_interval=args.summary_interval)
    try:
        return serve_bridge(bridge, args, args.config)
    except ConfigError as error:  # a target that validated but cannot be set up
        print(f"metrics-bridge: cannot start with {args.config}:", file=sys.stderr)
        print(error.listing(), file=sys.stderr)
        return 1


def demo_config_text() -> str:
    """The bundled demo configuration."""
    return resources.files("exporter").joinpath("demo.yaml").read_text(encoding="utf-8")


def cmd_demo(args: argparse.Namespace) -> int:
    """Start the demo API and a bridge polling it."""
    from .demo import DemoPlatform, DemoServer, Fault

    api_host, api_port = parse_listen(args.api_listen)
    api = DemoServer(DemoPlatform(pods=args.pods, churn_interval=args.churn_interval), api_host, api_port).start()
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
        api.close()
        return 1
    if args.fail_ratio > 0:
        # One decision per poll: held for most of an interval, so a poll's retries meet the same failure.
        window = 0.6 * min(t.interval for t in config.targets)
        api.fault = Fault(mode="status", status=503, ratio=args.fail_ratio, window=window)
    demo_yaml = resources.files("exporter").joinpath("demo.yaml")

    def banner(port: int) -> None:
        base = api.url.rsplit("/api/", 1)[0]
        print(
            f"metrics-bridge demo: simulated inference platform API at {api.url} ({args.pods} pods"
            + (f", {args.fail_ratio:.0%} of polls failing" if args.fail_ratio > 0 else "") + ")\n"
            f"  metrics:    curl http://localhost:{port}/metrics\n"
            f"  status:     http://localhost:{port}/  (each target's last poll, its outcome and error)\n"
            f"  try:        METRICS_BRIDGE_DEMO_URL={api.url} metrics-bridge try --config {demo_yaml} --target pods\n"
            f"  faults:     curl -X POST -d '{{\"mode\": \"status\", \"status\": 503}}' {base}/-/faults   (mode none: heal)\n"
            "  dashboards: dashboards/*.json into Grafana, alerts/metrics-bridge.rules.yml into Prometheus"
            " (docs/dashboards-and-alerts.md)\n"
            "  stop:       Ctrl-C",
            file=sys.stderr,
            flush=True,
        )

    try:
        return serve_bridge(Bridge(config, summary_interval=args.summary_interval), args, None, banner)
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
