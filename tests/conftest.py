"""Shared fixtures: the fake API, a running bridge, and tool look-ups that fail in CI instead of skipping."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client import CollectorRegistry

from exporter.bridge import Bridge
from exporter.config import Config, parse_config
from exporter.server import MetricsServer, create_app

from fakeapi import FakeAPI

TESTDATA = Path(__file__).parent / "testdata"
ARTIFACTS = Path(__file__).parent / "artifacts"
REQUIRE_TOOLS = os.environ.get("METRICS_BRIDGE_REQUIRE_TOOLS") == "1"
# Modules whose tests share one costly module-scoped fixture: a fresh venv (test_readme's clone, test_dockerfile's
# built_venv) or a live Prometheus (test_live_prometheus's stack). pytest-xdist runs each on a single worker.
SHARED_FIXTURE_MODULES = ("test_readme.py", "test_dockerfile.py", "test_live_prometheus.py")


def require_tool(name: str) -> str:
    """The path of an external tool; skip when it is absent, but fail when CI requires every tool."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package; tests/run.sh installs it)"
        if REQUIRE_TOOLS:
            pytest.fail(message + " and METRICS_BRIDGE_REQUIRE_TOOLS=1")
        pytest.skip(message)
    return path


def require_module(name: str):  # type: ignore[no-untyped-def]
    """Import an optional test dependency; skip when absent, fail when CI requires every tool."""
    try:
        return __import__(name)
    except ImportError:
        if REQUIRE_TOOLS:
            pytest.fail(f"Python module {name} is missing and METRICS_BRIDGE_REQUIRE_TOOLS=1")
        pytest.skip(f"Python module {name} is not installed")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Under `-n` (xdist's `--dist load`): every test is its own unit of work, except that each of
    SHARED_FIXTURE_MODULES is one unit, handed out first (xdist hands out larger units first), so its fixture is
    built once and early. (`--dist loadgroup` with xdist_group marks would say this, but pytest 9.2 ignores the
    marks: pytest-dev/pytest-xdist#1386.)"""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module.rsplit("/", 1)[-1] in SHARED_FIXTURE_MODULES else nodeid

    return SharedFixtureModulesTogether(config, log)


@pytest.fixture(autouse=True)
def logging_is_restored() -> Iterator[None]:
    """Undo what `configure_logging` (run by every in-process `cli.main`) changes, so no test sees another's logging:
    the root logger's handlers and level, the urllib3 logger's level, and the thread and unraisable hooks."""
    root, urllib3 = logging.getLogger(), logging.getLogger("urllib3")
    handlers, levels = list(root.handlers), (root.level, urllib3.level)
    hooks = threading.excepthook, sys.unraisablehook
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(levels[0])
    urllib3.setLevel(levels[1])
    threading.excepthook, sys.unraisablehook = hooks


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    """A fake third-party API on loopback."""
    server = FakeAPI().start()
    yield server
    server.close()


class RunningBridge:
    """A bridge and its HTTP server on a free loopback port."""

    def __init__(self, config: Config, **kwargs: object) -> None:
        self.registry = CollectorRegistry()
        self.bridge = Bridge(config, registry=self.registry, process_metrics=False, **kwargs)  # type: ignore[arg-type]
        self.server = MetricsServer(create_app(self.bridge), "127.0.0.1", 0).start()

    @property
    def url(self) -> str:
        """Base URL of the bridge's HTTP server."""
        return f"http://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        """Stop polling and serving."""
        self.bridge.stop(grace=2.0)
        self.server.close()


@pytest.fixture
def run_bridge() -> Iterator:
    """Start bridges from YAML text (`schedule=False`: poll only via `bridge.poll_now`); all stop after the test."""
    started: list[RunningBridge] = []

    def start(yaml_text: str, schedule: bool = True, **kwargs: object) -> RunningBridge:
        running = RunningBridge(parse_config(yaml_text), **kwargs)
        running.bridge.start(schedule=schedule)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()
