#!/usr/bin/env python3
"""Write the committed Grafana dashboards from code: `python dashboards/generate.py [--check] [--output DIR]`.

Built with grafana-foundation-sdk (pinned ==0.0.21: an unpinned install picks a broken epoch release). The first section
holds everything a deployment might change — uids, selectors, variables, units — so the panels below never spell one.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

# The SDK warns on import that its v2 dashboard kind is preferred. v2 is the resource of Grafana 12's new, still
# feature-flagged API; the classic JSON model made here is what import, the HTTP API, provisioning and the Helm chart's
# sidecar ConfigMaps all take, so the warning is silenced rather than followed.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
    from grafana_foundation_sdk.builders import dashboard, prometheus, stat, statetimeline, table, timeseries
    from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, ReduceDataOptions, VizLegendOptions
    from grafana_foundation_sdk.cog.builder import Builder
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.common import (
        DataSourceRef,
        GraphThresholdsStyleMode,
        LegendDisplayMode,
        LegendPlacement,
    )
    from grafana_foundation_sdk.models.dashboard import (
        DashboardCursorSync,
        DashboardLinkType,
        DataTransformerConfig,
        Threshold,
        ThresholdsMode,
        ValueMap,
        ValueMappingResult,
        VariableOption,
        VariableRefresh,
        VariableSort,
    )
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent

# ── Configuration: the one place for uids, file names, selectors, variables and units ─────────────────────────────────

UIDS = {
    "services": "metrics-bridge-inference-services",
    "pods": "metrics-bridge-pods-containers",
    "health": "metrics-bridge-health",
}
TAG = "metrics-bridge"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")

# The variable chain: each variable's values are narrowed by every variable before it, and every query filters on the
# prefix of the chain that its metric's labels allow. "All" means the regex `.*`, so one selector serves every level.
CHAIN = ("job", "target", "namespace", "pod", "container")
ALL = ".*"
SERVICE_LEVELS = "service"
WORKLOAD_LEVELS = "pod|container"
VARIABLE_QUERIES = {
    "job": "label_values(metrics_bridge_build_info, job)",
    "target": 'label_values(metrics_bridge_target_up{job=~"$job"}, target)',
    # Bridged series carry `level`, so "any bridged series at these levels" needs no metric name.
    "namespace": 'label_values({job=~"$job", target=~"$target", level=~"%(levels)s"}, namespace)',
    "pod": 'label_values({job=~"$job", target=~"$target", namespace=~"$namespace", level=~"%(levels)s"}, pod)',
    "container": 'label_values({job=~"$job", target=~"$target", namespace=~"$namespace", pod=~"$pod", level="container"}, container)',
}
VARIABLE_LABELS = {"job": "Job", "target": "Target", "namespace": "Namespace", "pod": "Pod", "container": "Container"}

RATE = "$__rate_interval"
TOP_N = 10


def selector(depth: str) -> str:
    """The label matchers of the variable chain up to and including `depth` (one of CHAIN)."""
    names = CHAIN[: CHAIN.index(depth) + 1]
    return ", ".join(f'{name}=~"${name}"' for name in names)


def series(metric: str, depth: str) -> str:
    """A metric filtered by the variable chain up to `depth`."""
    return f"{metric}{{{selector(depth)}}}"


class Unit:
    """Grafana unit ids; `suffix:` units are Grafana's custom units."""

    SECONDS = "s"
    DURATION = "dtdurations"
    RATIO = "percentunit"
    BYTES = "bytes"
    REQUESTS_PER_SECOND = "reqps"
    TOKENS_PER_SECOND = "suffix: tokens/s"
    POLLS_PER_SECOND = "suffix: polls/s"
    CORES = "suffix: cores"
    COUNT = "short"
    BOOLEAN = "bool_yes_no"


# Where the colours turn: the thresholds of the alerts in alerts/metrics-bridge.rules.yml (tests/test_dashboards.py
# checks that they agree).
ERROR_RATIO_WARNING = 0.05
LATENCY_P99_WARNING = 2.0
MEMORY_OF_LIMIT_WARNING = 0.9
POLL_FAILURE_RATIO_WARNING = 0.2
STALE_SECONDS_CRITICAL = 900

# ── Panel helpers ────────────────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str = ""


def _targets(queries: Sequence[Query], instant: bool = False, as_table: bool = False) -> list[Any]:
    built: list[Any] = []  # the panels take any data source's query builders
    for index, query in enumerate(queries):
        target = prometheus.Dataquery().ref_id(chr(ord("A") + index)).datasource(DATASOURCE).expr(query.expr)
        if query.legend:
            target = target.legend_format(query.legend)
        if instant:
            target = target.instant()
        if as_table:
            target = target.format(PromQueryFormat.TABLE)
        built.append(target)
    return built


def _steps(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(v, c) for v, c in steps])


def graph(title: str, description: str, unit: str, *queries: Query, min_value: float | None = 0,
          max_value: float | None = None, thresholds: dashboard.ThresholdsConfig | None = None) -> timeseries.Panel:
    """A time-series panel."""
    panel = (
        timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
        .targets(_targets(queries)).span(12).height(8).fill_opacity(10)
        .legend(VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.TABLE)
                .placement(LegendPlacement.RIGHT).calcs(["lastNotNull", "max"]))
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED)
        )
    return panel


def headline(title: str, description: str, unit: str, query: Query, span: int = 4,
             thresholds: dashboard.ThresholdsConfig | None = None, mappings: list[Any] | None = None) -> stat.Panel:
    """A stat panel showing one current number."""
    panel = (
        stat.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
        .targets(_targets([query], instant=True)).span(span).height(4)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds or _steps((None, "green")))
    )
    if mappings:
        panel = panel.mappings(mappings)
    return panel


def top_table(title: str, description: str, unit: str, query: Query, value_name: str, span: int = 12) -> table.Panel:
    """A table of the rows of one instant query, largest value first."""
    return (
        table.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
        .targets(_targets([query], instant=True, as_table=True)).span(span).height(8)
        .with_transformation(DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True}, "renameByName": {"Value": value_name},
        }))
        .with_transformation(DataTransformerConfig(id_val="sortBy", options={
            "sort": [{"field": value_name, "desc": True}],
        }))
    )


def states(title: str, description: str, query: Query, mapping: ValueMap) -> statetimeline.Panel:
    """A state timeline of a 0/1 gauge."""
    return (
        statetimeline.Panel().title(title).description(description).unit(Unit.BOOLEAN).datasource(DATASOURCE)
        .targets(_targets([query])).span(12).height(6).mappings(list[Any]([mapping]))
        .thresholds(_steps((None, "red"), (1, "green")))
    )


def up_down(one: str, zero: str) -> ValueMap:
    """A value mapping for a 0/1 gauge."""
    return ValueMap({"1": ValueMappingResult(text=one, color="green"), "0": ValueMappingResult(text=zero, color="red")})


def variables(depth: str, levels: str) -> list[Builder]:
    """The datasource variable, then the chain up to `depth`, each narrowed by the ones before it."""
    built: list[Builder] = [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        .description("The Prometheus that scrapes metrics-bridge."),
    ]
    for name in CHAIN[: CHAIN.index(depth) + 1]:
        query = VARIABLE_QUERIES[name] % {"levels": levels}
        built.append(
            dashboard.QueryVariable(name).label(VARIABLE_LABELS[name]).datasource(DATASOURCE).query(query)
            .definition(query).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(ALL)
            .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        )
    return built


def new_dashboard(key: str, title: str, description: str, depth: str, levels: str = "") -> dashboard.Dashboard:
    """A dashboard with the house settings, its variables and links to its siblings."""
    return (
        dashboard.Dashboard(title).uid(UIDS[key]).description(description).tags([TAG])
        .time("now-1h", "now").refresh("30s").timezone("browser").tooltip(DashboardCursorSync.CROSSHAIR)
        .editable().variables(variables(depth, levels))
        .link(dashboard.DashboardLink("metrics-bridge").type(DashboardLinkType.DASHBOARDS).tags([TAG])
              .as_dropdown(True).include_vars(True).keep_time(True))
    )


# ── 1. Inference services ────────────────────────────────────────────────────────────────────────────────────────────


def inference_services() -> dashboard.Dashboard:
    """Service level: request rate, latency, errors, tokens and queue per service and model."""

    def s(metric: str) -> str:
        return series(metric, "namespace")

    by = "namespace, service, model"
    legend = "{{service}} ({{model}})"
    weighted_errors = (
        f"sum({s('inference_error_ratio')} * {s('inference_requests_per_second')})"
        f" / sum({s('inference_requests_per_second')})"
    )
    return (
        new_dashboard("services", "metrics-bridge / Inference services",
                      "Service-level figures the bridge polls from the inference platform: traffic, latency, errors, "
                      "throughput and queueing, per service and model.", "namespace", SERVICE_LEVELS)
        .with_row(dashboard.Row("Now"))
        .with_panel(headline("Request rate", "Requests per second answered by all selected services, from the rate of "
                             "their request counters.", Unit.REQUESTS_PER_SECOND,
                             Query(f"sum(rate({s('inference_requests_total')}[{RATE}]))")))
        .with_panel(headline("Error ratio", "Share of all requests that failed, 0-1: each service's error ratio "
                             "weighted by its request rate.", Unit.RATIO, Query(weighted_errors),
                             thresholds=_steps((None, "green"), (ERROR_RATIO_WARNING / 5, "orange"),
                                               (ERROR_RATIO_WARNING, "red"))))
        .with_panel(headline("Worst p99 latency", "The highest 99th-percentile latency among the selected services: "
                             "1 request in 100 to that service takes longer than this.", Unit.SECONDS,
                             Query(f"max({s('inference_latency_p99_seconds')})"),
                             thresholds=_steps((None, "green"), (LATENCY_P99_WARNING / 2, "orange"),
                                               (LATENCY_P99_WARNING, "red"))))
        .with_panel(headline("Tokens per second", "Tokens generated per second by all selected services.",
                             Unit.TOKENS_PER_SECOND, Query(f"sum({s('inference_tokens_per_second')})")))
        .with_panel(headline("Queued requests", "Requests waiting for a free model replica, summed over the selected "
                             "services. Above zero means demand exceeds capacity.", Unit.COUNT,
                             Query(f"sum({s('inference_queue_depth')})"),
                             thresholds=_steps((None, "green"), (1, "orange"), (10, "red"))))
        .with_panel(headline("Services ready", "How many of the selected services report READY; the rest report "
                             "UNAVAILABLE (no running replica).", Unit.COUNT,
                             Query(f"sum({s('inference_service_ready')})")))
        .with_row(dashboard.Row("Per service and model"))
        .with_panel(graph("Request rate", "Requests per second per service: computed by Prometheus from the request "
                          "counter (solid), and as the API reports it (reported).", Unit.REQUESTS_PER_SECOND,
                          Query(f"sum by ({by}) (rate({s('inference_requests_total')}[{RATE}]))", legend),
                          Query(f"sum by ({by}) ({s('inference_requests_per_second')})", legend + " reported")))
        .with_panel(graph("Latency p50 and p99", "Median and 99th-percentile request latency per service, as the API "
                          "reports them.", Unit.SECONDS,
                          Query(f"max by ({by}) ({s('inference_latency_p50_seconds')})", legend + " p50"),
                          Query(f"max by ({by}) ({s('inference_latency_p99_seconds')})", legend + " p99"),
                          thresholds=_steps((None, "green"), (LATENCY_P99_WARNING, "red"))))
        .with_panel(graph("Error ratio", "Share of each service's requests that failed, 0-1.", Unit.RATIO,
                          Query(f"max by ({by}) ({s('inference_error_ratio')})", legend),
                          thresholds=_steps((None, "green"), (ERROR_RATIO_WARNING, "red"))))
        .with_panel(graph("Tokens per second", "Tokens generated per second per service.", Unit.TOKENS_PER_SECOND,
                          Query(f"sum by ({by}) ({s('inference_tokens_per_second')})", legend)))
        .with_panel(graph("Queue depth", "Requests waiting for a free model replica, per service.", Unit.COUNT,
                          Query(f"max by ({by}) ({s('inference_queue_depth')})", legend)))
        .with_panel(states("Readiness", "Whether each service reports READY (green) or UNAVAILABLE (red).",
                           Query(f"max by ({by}) ({s('inference_service_ready')})", legend),
                           up_down("READY", "UNAVAILABLE")))
    )


# ── 2. Pods and containers ───────────────────────────────────────────────────────────────────────────────────────────


def pods_and_containers() -> dashboard.Dashboard:
    """Pod and container level: CPU, memory, GPU, restarts, top-N tables."""

    def p(metric: str) -> str:
        return series(metric, "pod")

    def c(metric: str) -> str:
        return series(metric, "container")

    pod_by = "namespace, pod"
    ctr_by = "namespace, pod, container"
    pod_legend = "{{pod}}"
    ctr_legend = "{{pod}} / {{container}}"
    # Working set and limit come from different targets (and so differ in `target`): match on the container alone.
    memory_of_limit = (
        f"max by ({ctr_by}) ({c('inference_container_memory_working_set_bytes')})"
        f" / max by ({ctr_by}) ({c('inference_container_memory_limit_bytes')} > 0)"
    )
    pod_age = (
        f"(time() - max by ({pod_by}) ({p('inference_pod_start_time_seconds')}))"
        f" * on ({pod_by}) group_left (node, phase) max by ({pod_by}, node, phase) ({p('inference_pod_info')})"
    )
    return (
        new_dashboard("pods", "metrics-bridge / Pods and containers",
                      "CPU, memory and GPU per pod and per container, the largest consumers, and restarts, as the "
                      "bridge polls them from the inference platform.", "container", WORKLOAD_LEVELS)
        .with_row(dashboard.Row("Now"))
        .with_panel(headline("Pods", "Pods the platform reports in the selection.", Unit.COUNT,
                             Query(f"count(max by ({pod_by}) ({p('inference_pod_info')}))")))
        .with_panel(headline("CPU", "CPU in use by the selected pods, in cores.", Unit.CORES,
                             Query(f"sum({p('inference_pod_cpu_usage_cores')})")))
        .with_panel(headline("Memory", "Memory in use by the selected pods.", Unit.BYTES,
                             Query(f"sum({p('inference_pod_memory_usage_bytes')})")))
        .with_panel(headline("GPU utilisation", "Mean GPU utilisation of the selected pods, 0-1.", Unit.RATIO,
                             Query(f"avg({p('inference_pod_gpu_utilization_ratio')})")))
        .with_panel(headline("GPU memory", "GPU memory in use by the selected pods.", Unit.BYTES,
                             Query(f"sum({p('inference_pod_gpu_memory_used_bytes')})")))
        .with_panel(headline("Container restarts", "Restarts of the selected containers as the platform counts "
                             "them: its per-container restart counters, summed.", Unit.COUNT,
                             Query(f"sum({c('inference_container_restarts_total')})"),
                             thresholds=_steps((None, "green"), (1, "orange"))))
        .with_row(dashboard.Row(f"Top {TOP_N}"))
        .with_panel(top_table(f"Top {TOP_N} pods by CPU", "The pods using the most CPU now, in cores.", Unit.CORES,
                              Query(f"topk({TOP_N}, max by ({pod_by}) ({p('inference_pod_cpu_usage_cores')}))"),
                              "CPU (cores)"))
        .with_panel(top_table(f"Top {TOP_N} pods by memory", "The pods using the most memory now.", Unit.BYTES,
                              Query(f"topk({TOP_N}, max by ({pod_by}) ({p('inference_pod_memory_usage_bytes')}))"),
                              "Memory"))
        .with_panel(top_table(f"Top {TOP_N} containers by memory use of limit", "Working-set memory as a share of "
                              "the container's memory limit, 0-1; near 1 the container is about to be OOM-killed.",
                              Unit.RATIO, Query(f"topk({TOP_N}, {memory_of_limit})"), "Memory / limit"))
        .with_panel(top_table(f"Top {TOP_N} containers by restarts", "The containers that restarted most often, "
                              "from the platform's restart counters.", Unit.COUNT,
                              Query(f"topk({TOP_N}, max by ({ctr_by}) ({c('inference_container_restarts_total')}))"),
                              "Restarts"))
        .with_panel(top_table("Pods: node, phase and age", "Every selected pod with the node it runs on, its phase, "
                              "and how long ago it started.", Unit.DURATION, Query(pod_age), "Age", span=24))
        .with_row(dashboard.Row("Pods"))
        .with_panel(graph("CPU per pod", "CPU each pod uses, in cores.", Unit.CORES,
                          Query(f"max by ({pod_by}) ({p('inference_pod_cpu_usage_cores')})", pod_legend)))
        .with_panel(graph("Memory per pod", "Memory each pod uses.", Unit.BYTES,
                          Query(f"max by ({pod_by}) ({p('inference_pod_memory_usage_bytes')})", pod_legend)))
        .with_panel(graph("GPU utilisation per pod", "GPU utilisation of each pod, 0-1.", Unit.RATIO,
                          Query(f"max by ({pod_by}) ({p('inference_pod_gpu_utilization_ratio')})", pod_legend),
                          max_value=1))
        .with_panel(graph("GPU memory per pod", "GPU memory each pod uses.", Unit.BYTES,
                          Query(f"max by ({pod_by}) ({p('inference_pod_gpu_memory_used_bytes')})", pod_legend)))
        .with_row(dashboard.Row("Containers"))
        .with_panel(graph("CPU per container", "CPU each container uses, in cores.", Unit.CORES,
                          Query(f"max by ({ctr_by}) ({c('inference_container_cpu_usage_cores')})", ctr_legend)))
        .with_panel(graph("Memory per container", "Working-set memory of each container (what the OOM killer "
                          "looks at), and its limit.", Unit.BYTES,
                          Query(f"max by ({ctr_by}) ({c('inference_container_memory_working_set_bytes')})", ctr_legend),
                          Query(f"max by ({ctr_by}) ({c('inference_container_memory_limit_bytes')})",
                                ctr_legend + " limit")))
        .with_panel(graph("Memory use of limit per container", "Working-set memory as a share of the memory limit, "
                          "0-1.", Unit.RATIO, Query(memory_of_limit, ctr_legend), max_value=1,
                          thresholds=_steps((None, "green"), (MEMORY_OF_LIMIT_WARNING, "red"))))
        .with_panel(graph("GPU utilisation per container", "GPU utilisation of each container, 0-1.", Unit.RATIO,
                          Query(f"max by ({ctr_by}) ({c('inference_container_gpu_utilization_ratio')})", ctr_legend),
                          max_value=1))
        .with_panel(graph("GPU memory per container", "GPU memory each container uses.", Unit.BYTES,
                          Query(f"max by ({ctr_by}) ({c('inference_container_gpu_memory_used_bytes')})", ctr_legend)))
        .with_panel(graph("Container restarts", "Restarts per container within each rate interval; any bar is a "
                          "crash or an OOM kill.", Unit.COUNT,
                          Query(f"sum by ({ctr_by}) (increase({c('inference_container_restarts_total')}[{RATE}]))",
                                ctr_legend)))
    )


# ── 3. Bridge health ─────────────────────────────────────────────────────────────────────────────────────────────────


def bridge_health() -> dashboard.Dashboard:
    """The bridge's own metrics: polls, failures, durations, freshness, series, reloads and clock skew."""

    def t(metric: str) -> str:
        return series(metric, "target")

    def j(metric: str) -> str:
        return series(metric, "job")

    failures = f"sum by (target) (rate({t('metrics_bridge_poll_failures_total')}[{RATE}]))"
    successes = f"sum by (target) (rate({t('metrics_bridge_poll_success_total')}[{RATE}]))"

    def quantile(metric: str, q: float) -> Query:
        return Query(f"histogram_quantile({q}, sum by (target, le) (rate({t(metric + '_bucket')}[{RATE}])))",
                     f"{{{{target}}}} p{round(q * 100)}")

    # A target that never succeeded has a last-success time of 0: leave it out rather than plot 56 years.
    age = (f"(time() - {t('metrics_bridge_last_success_timestamp_seconds')})"
           f" and ({t('metrics_bridge_last_success_timestamp_seconds')} > 0)")
    return (
        new_dashboard("health", "metrics-bridge / Bridge health",
                      "Is the bridge polling its targets, how fast, how fresh is its data, and what fails. Built on "
                      "the metrics_bridge_* self-metrics; the alerts in alerts/metrics-bridge.rules.yml use the same.",
                      "target")
        .with_row(dashboard.Row("Now"))
        .with_panel(headline("Targets up", "Targets whose last poll succeeded.", Unit.COUNT,
                             Query(f"sum({t('metrics_bridge_target_up')})")))
        .with_panel(headline("Targets down", "Targets whose last poll failed (or that have not been polled yet).",
                             Unit.COUNT, Query(f"count({t('metrics_bridge_target_up')}) - sum({t('metrics_bridge_target_up')})"),
                             thresholds=_steps((None, "green"), (1, "red"))))
        .with_panel(headline("Oldest data", "Time since the last successful poll of the stalest selected target.",
                             Unit.SECONDS, Query(f"max({age})"),
                             thresholds=_steps((None, "green"), (STALE_SECONDS_CRITICAL / 3, "orange"),
                                               (STALE_SECONDS_CRITICAL, "red"))))
        .with_panel(headline("Series served", "Bridged series the selected targets currently serve on /metrics.",
                             Unit.COUNT, Query(f"sum({t('metrics_bridge_series')})")))
        .with_panel(headline("Last reload succeeded", "Whether the bridge's last configuration (re)load succeeded. "
                             "After a failed reload it keeps running the previous configuration.", Unit.BOOLEAN,
                             Query(f"min({j('metrics_bridge_config_last_reload_successful')})"),
                             thresholds=_steps((None, "red"), (1, "green")), mappings=[up_down("Yes", "No")]))
        .with_panel(headline("Config age", "Time since the configuration was last loaded successfully.",
                             Unit.SECONDS,
                             Query(f"time() - max({j('metrics_bridge_config_last_reload_success_timestamp_seconds')})")))
        .with_row(dashboard.Row("Polls"))
        .with_panel(graph("Polls per second", "Successful and failed polls per second per target.",
                          Unit.POLLS_PER_SECOND, Query(successes, "{{target}} succeeded"),
                          Query(failures, "{{target}} failed")))
        .with_panel(graph("Poll failure ratio", "Share of each target's polls that failed, 0-1: what "
                          "MetricsBridgePollFailing alerts on (over 10 minutes there).", Unit.RATIO,
                          Query(f"{failures} / ({failures} + {successes})", "{{target}}"), max_value=1,
                          thresholds=_steps((None, "green"), (POLL_FAILURE_RATIO_WARNING, "red"))))
        .with_panel(graph("Poll failures by reason", "Failed polls per second by target and reason: timeout, "
                          "connection, tls, http_status, invalid_json, too_large, pagination, mapping or internal.",
                          Unit.POLLS_PER_SECOND,
                          Query(f"sum by (target, reason) (rate({t('metrics_bridge_poll_failures_total')}[{RATE}]))",
                                "{{target}} {{reason}}")))
        .with_panel(states("Targets up", "Whether each target's last poll succeeded.",
                           Query(f"max by (target) ({t('metrics_bridge_target_up')})", "{{target}}"),
                           up_down("up", "down")))
        .with_panel(graph("Poll duration", "Time from the start of a poll's fetch to its publish: median, 90th "
                          "and 99th percentile, from the histogram.", Unit.SECONDS,
                          quantile("metrics_bridge_poll_duration_seconds", 0.5),
                          quantile("metrics_bridge_poll_duration_seconds", 0.9),
                          quantile("metrics_bridge_poll_duration_seconds", 0.99)))
        .with_panel(graph("Poll start delay", "How late polls start against their schedule: median and 99th "
                          "percentile. Growing delay means the scheduler is saturated.", Unit.SECONDS,
                          quantile("metrics_bridge_poll_start_delay_seconds", 0.5),
                          quantile("metrics_bridge_poll_start_delay_seconds", 0.99)))
        .with_panel(graph("Time since last success", "Age of each target's newest data. It grows by one second "
                          "per second while polls fail; MetricsBridgeDataStale fires beyond 15 minutes.",
                          Unit.SECONDS, Query(age, "{{target}}"),
                          thresholds=_steps((None, "green"), (STALE_SECONDS_CRITICAL, "red"))))
        .with_panel(graph("Skipped polls", "Scheduled polls not run because the previous one was still running "
                          "or the run misfired, per rate interval. Steady skips mean the interval is shorter than "
                          "the poll takes.", Unit.COUNT,
                          Query(f"sum by (target) (increase({t('metrics_bridge_poll_skipped_total')}[{RATE}]))",
                                "{{target}}")))
        .with_panel(graph("Large-poll wait", "Seconds per rate interval each target's polls waited for a large-poll "
                          "slot (scheduler.large_poll_concurrency) before parsing a large response. Waits that "
                          "keep growing mean the large targets' polls together take longer than their timeouts "
                          "allow.", Unit.SECONDS,
                          Query(f"sum by (target) (increase({t('metrics_bridge_large_poll_wait_seconds_total')}"
                                f"[{RATE}]))", "{{target}}")))
        .with_panel(graph("Large polls", "Polls holding a large-poll slot (parsing, mapping or rendering a large "
                          "response) and polls waiting for one, per replica.", Unit.COUNT,
                          Query(f"max by (instance) ({t('metrics_bridge_large_polls_running')})", "{{instance}} running"),
                          Query(f"max by (instance) ({t('metrics_bridge_large_polls_waiting')})", "{{instance}} waiting")))
        .with_row(dashboard.Row("Series and data"))
        .with_panel(graph("Series per target", "Bridged series each target currently serves.", Unit.COUNT,
                          Query(f"sum by (target) ({t('metrics_bridge_series')})", "{{target}}")))
        .with_panel(graph("Duplicate series", "Samples per rate interval that repeated a series already seen in "
                          "the same poll (the last one is kept): a mapping whose labels do not tell objects apart.",
                          Unit.COUNT,
                          Query(f"sum by (target) (increase({t('metrics_bridge_duplicate_series_total')}[{RATE}]))",
                                "{{target}}")))
        .with_panel(graph("Samples dropped", "Samples per rate interval left out of a poll, by reason: a missing "
                          "value, or a bad one skipped by skip_bad_values.", Unit.COUNT,
                          Query(f"sum by (target, reason) (increase({t('metrics_bridge_samples_dropped_total')}"
                                f"[{RATE}]))", "{{target}} {{reason}}")))
        .with_panel(graph("API clock skew", "The API's Date header minus the bridge's clock, per target. The "
                          "header has one-second resolution, so values within ±1 s are noise.", Unit.SECONDS,
                          Query(f"max by (target) ({t('metrics_bridge_api_clock_skew_seconds')})", "{{target}}"),
                          min_value=None))
        .with_row(dashboard.Row("Discovery"))
        .with_panel(graph("Discovered items", "Items in each discovery target's last list: one request per item "
                          "per poll.", Unit.COUNT,
                          Query(f"max by (target) ({t('metrics_bridge_discovered_items')})", "{{target}}")))
        .with_panel(graph("Discovered item failures", "Items per rate interval that gave no samples, by reason; "
                          "their series are missing until they succeed again, while the target stays up.",
                          Unit.COUNT,
                          Query(f"sum by (target, reason) (increase({t('metrics_bridge_discovery_item_failures_total')}"
                                f"[{RATE}]))", "{{target}} {{reason}}")))
    )


# ── Output ───────────────────────────────────────────────────────────────────────────────────────────────────────────

DASHBOARDS = {
    "services": inference_services,
    "pods": pods_and_containers,
    "health": bridge_health,
}


def _number_panels(panels: list[dict]) -> None:
    """Give every panel a stable id in layout order (the SDK leaves ids to Grafana, which would renumber them)."""
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number


def render(key: str) -> str:
    """One dashboard as the JSON text committed to this folder."""
    model = json.loads(json.dumps(DASHBOARDS[key]().build(), cls=JSONEncoder))
    _number_panels(model["panels"])
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> Iterator[tuple[str, str]]:
    """(file name, JSON text) for every dashboard."""
    for key in DASHBOARDS:
        yield f"{UIDS[key]}.json", render(key)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the dashboards, or with --check report any that differ from the generated ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=HERE, help="folder to write the JSON files to")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered():
        path = args.output / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            args.output.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run python dashboards/generate.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
