"""Exposition names: the sample names a metric family occupies, and those the process/platform/gc collectors serve.

OpenMetrics parses a counter `jobs_total` as the family `jobs`, which also owns `jobs_created`; a gauge `jobs`
beside it is a clash the strict parser rejects. So a metric is checked by every name its family occupies::

    occupied_names("jobs_total", "counter") == {"jobs", "jobs_total", "jobs_created"}
"""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.gc_collector import GCCollector

__all__ = ["openmetrics_family", "occupied_names", "register_standard_collectors", "standard_collector_names"]

# The suffixes prometheus_client's strict OpenMetrics parser gives each type's family (besides the bare family name).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "info": ("_info",),
    "histogram": ("_count", "_sum", "_bucket", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gaugehistogram": ("_gcount", "_gsum", "_bucket"),
}


def openmetrics_family(name: str, type_: str) -> str:
    """The OpenMetrics family of a bridged metric: a counter without `_total`, an info without `_info`."""
    suffix = {"counter": "_total", "info": "_info"}.get(type_)
    return name[: -len(suffix)] if suffix and name.endswith(suffix) else name


def _family_names(family: str, type_: str) -> frozenset[str]:
    return frozenset({family, *(family + suffix for suffix in _SUFFIXES.get(type_, ()))})


def occupied_names(name: str, type_: str) -> frozenset[str]:
    """Every name a bridged metric's family occupies in either text format."""
    return _family_names(openmetrics_family(name, type_), type_) | {name}


def register_standard_collectors(registry: CollectorRegistry) -> None:
    """Add the process, platform and garbage-collector metrics every exporter serves."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


@lru_cache(maxsize=1)
def standard_collector_names() -> dict[str, str]:
    """Each name the standard collectors occupy here, mapped to the family that owns it (read from the collectors)."""
    registry = CollectorRegistry(auto_describe=True)
    register_standard_collectors(registry)
    return {name: family.name for family in registry.collect() for name in _family_names(family.name, family.type)}
