"""The Helm chart, rendered by Helm's own Go engine (helm-python-sdk) for each scenario in helm/metrics-bridge/ci/.

Core manifests are validated with kubernetes-validate (strict) at the oldest Kubernetes the chart supports and the
newest it bundles; the Prometheus Operator kinds are checked field by field; the config a ConfigMap carries is run
through `metrics-bridge check` in a copy of the pod's file tree and environment.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import exporter
from exporter.bridge import shard_of
from exporter.cli import build_parser
from exporter.config import parse_config

from conftest import require_module

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "metrics-bridge"
SCENARIOS = {p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}
RELEASE, NAMESPACE = "metrics-bridge", "monitoring"
OLDEST_KUBERNETES = "1.28"  # Chart.yaml kubeVersion: the apps.kubernetes.io/pod-index label
OPERATOR_GROUP = "monitoring.coreos.com/"
POD_INDEX_LABEL = "metadata.labels['apps.kubernetes.io/pod-index']"
ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# --------------------------------------------------------------------------------------------------- rendering


@functools.cache
def helm() -> Any:
    """The helm_python module (skips, or fails in CI, when helm-python-sdk is missing)."""
    return require_module("helm_python")


def scenario_values(scenario: str) -> dict[str, Any]:
    """A ci/ scenario's values, as `helm install -f` would read them."""
    return yaml.safe_load(SCENARIOS[scenario].read_text(encoding="utf-8")) or {}


@functools.cache
def _render_json(values_json: str) -> str:
    with helm().Chart.load(CHART) as chart:
        return json.dumps(chart.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE))


def render(values: dict[str, Any]) -> dict[str, str]:
    """Template path → rendered text, from Helm's engine (NOTES.txt included)."""
    return json.loads(_render_json(json.dumps(values, sort_keys=True)))


def manifests(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders for `values`."""
    objects = []
    for path, text in sorted(render(values).items()):
        if not path.endswith(".yaml"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of a kind."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def workload(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment or StatefulSet."""
    found = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [o["kind"] for o in found]
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The bridge container of the workload's pod template."""
    (bridge,) = workload(objects)["spec"]["template"]["spec"]["containers"]
    return bridge


def config_text(objects: list[dict[str, Any]]) -> str:
    """config.yaml as the bridge's ConfigMap carries it."""
    name = workload(objects)["metadata"]["name"]
    configmap = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name)
    return configmap["data"]["config.yaml"]


def pod_env(bridge: dict[str, Any], pod_index: int = 0) -> dict[str, str]:
    """The container's environment as the kubelet would set it (Secret references get a placeholder)."""
    env = {}
    for item in bridge.get("env", []):
        if "value" in item:
            env[item["name"]] = ENV_REF.sub(lambda m: env.get(m[1], m[0]), str(item["value"]))
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == POD_INDEX_LABEL:
            env[item["name"]] = str(pod_index)
        else:
            env[item["name"]] = "from-a-secret"
    return env


def pod_args(bridge: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The container's arguments after the kubelet's $(VAR) expansion."""
    return [ENV_REF.sub(lambda m: env.get(m[1], m[0]), arg) for arg in bridge["args"]]


def sync_module() -> Any:
    """helm/sync-chart-files.py, imported by path."""
    spec = importlib.util.spec_from_file_location("sync_chart_files", REPO / "helm" / "sync-chart-files.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ci_directory_has_the_three_scenarios() -> None:
    assert set(SCENARIOS) >= {"default", "integrations", "sharded"}


# --------------------------------------------------------------------------------------------------- chart files


@pytest.mark.integration
def test_chart_app_version_is_the_package_version() -> None:
    with helm().Chart.load(CHART) as chart:
        assert chart.metadata["appVersion"] == exporter.__version__
        assert chart.metadata["kubeVersion"] == f">={OLDEST_KUBERNETES}.0-0"


@pytest.mark.integration
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_lints_clean_in_strict_mode(scenario: str) -> None:
    for kube in (OLDEST_KUBERNETES, newest_kubernetes()):
        report = helm().lint(CHART, scenario_values(scenario), strict=True, namespace=NAMESPACE, kube_version=f"v{kube}.0")
        findings = [m for m in report["messages"] if m["severity"] >= 2]  # 1 is "info", e.g. "icon is recommended"
        assert (findings, report["errors"]) == ([], []), f"Kubernetes {kube}"


@pytest.mark.integration
def test_values_schema_rejects_a_misspelt_key() -> None:
    with helm().Chart.load(CHART) as chart:
        chart.validate_schema(scenario_values("integrations"))
        with pytest.raises(helm().HelmValuesError, match="enable"):
            chart.validate_schema({"serviceMonitor": {"enable": True}})
        with pytest.raises(helm().HelmValuesError, match="shards"):
            chart.validate_schema({"sharding": {"shards": 0}})


def test_every_optional_block_is_present_off_and_has_a_commented_example() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    for block in ("serviceMonitor", "prometheusRule", "dashboards", "networkPolicy", "podDisruptionBudget", "webConfig"):
        assert values[block]["enabled"] is False, block
        assert re.search(rf"^# {block}:\n#   enabled: true$", text, re.M), f"{block} has no commented example"
    for block in ("config", "secrets", "env", "envFrom", "extraArgs", "imagePullSecrets", "topologySpreadConstraints"):
        assert not values[block], block
        assert re.search(rf"^# {block}:\n#   ", text, re.M), f"{block} has no commented example"
    assert values["sharding"]["shards"] == 1


def test_chart_copies_match_their_sources() -> None:
    sync = sync_module()
    sources = set(sync.planned_copies().values())
    assert REPO / "alerts" / "metrics-bridge.rules.yml" in sources, "alerts/metrics-bridge.rules.yml is missing"
    assert REPO / "examples" / "config.yaml" in sources
    assert any(p.parent == REPO / "dashboards" for p in sources), "dashboards/ holds no *.json"
    assert sync.differences() == [], "run: python3 helm/sync-chart-files.py"


def test_sync_reports_an_edited_copy_and_a_copy_without_source(tmp_path: Path) -> None:
    sync = sync_module()
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "config.yaml").write_text("targets: []\n")
    files = tmp_path / "files"
    assert sync.sync(tmp_path, files) == ["files/config.yaml: missing copy of examples/config.yaml"]
    assert sync.differences(tmp_path, files) == []
    (files / "config.yaml").write_text("edited\n")
    (files / "dashboards").mkdir()
    (files / "dashboards" / "gone.json").write_text("{}")
    assert len(sync.differences(tmp_path, files)) == 2
    sync.sync(tmp_path, files)
    assert (files / "config.yaml").read_text() == "targets: []\n"
    assert not (files / "dashboards" / "gone.json").exists()


# --------------------------------------------------------------------------------------------------- Kubernetes


@functools.cache
def newest_kubernetes() -> str:
    """The newest Kubernetes whose schemas kubernetes-validate bundles."""
    return require_module("kubernetes_validate").utils.latest_version()


def expected_kinds(scenario: str) -> list[str]:
    kinds = ["ConfigMap", "Service", "ServiceAccount", "StatefulSet" if scenario == "sharded" else "Deployment"]
    if scenario == "integrations":
        kinds += ["NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "ServiceMonitor"]
        kinds += ["ConfigMap"] * len(list((REPO / "dashboards").glob("*.json")))
    if scenario == "sharded":
        kinds += ["PodDisruptionBudget", "ServiceMonitor"]
    return sorted(kinds)


@pytest.mark.integration
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_scenario_renders_the_expected_objects(scenario: str) -> None:
    objects = manifests(scenario_values(scenario))
    assert sorted(o["kind"] for o in objects) == expected_kinds(scenario)
    for obj in objects:
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "metrics-bridge"
        assert obj["metadata"]["labels"]["app.kubernetes.io/version"] == exporter.__version__


@pytest.mark.integration
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("kube", ["oldest", "newest"])
def test_every_core_manifest_is_valid_kubernetes(scenario: str, kube: str) -> None:
    validate = require_module("kubernetes_validate").validate
    version = OLDEST_KUBERNETES if kube == "oldest" else newest_kubernetes()
    core = [o for o in manifests(scenario_values(scenario)) if not o["apiVersion"].startswith(OPERATOR_GROUP)]
    assert core
    for obj in core:
        validate(obj, version, strict=True)


@pytest.mark.integration
def test_kubernetes_validate_rejects_an_unknown_field() -> None:
    kubernetes_validate = require_module("kubernetes_validate")
    deployment = workload(manifests({}))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, newest_kubernetes(), strict=True)


@pytest.mark.integration
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_pods_are_hardened(scenario: str) -> None:
    objects = manifests(scenario_values(scenario))
    pod = workload(objects)["spec"]["template"]["spec"]
    bridge = container(objects)
    assert pod["automountServiceAccountToken"] is False
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = bridge["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in bridge["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]], "the read-only root needs a writable /tmp"
    assert all(m.get("readOnly") for path, m in mounts.items() if path != "/tmp")
    assert bridge["resources"]["requests"]["memory"] and bridge["resources"]["limits"]["memory"]


@pytest.mark.integration
def test_the_pod_runs_as_the_images_user() -> None:
    user = re.findall(r"^USER\s+(\d+):(\d+)\s*$", (REPO / "Dockerfile").read_text(), re.M)[-1]
    context = workload(manifests({}))["spec"]["template"]["spec"]["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user


@pytest.mark.integration
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_probes_and_service_reach_the_metrics_port(scenario: str) -> None:
    objects = manifests(scenario_values(scenario))
    bridge = container(objects)
    assert bridge["ports"] == [{"name": "http", "containerPort": 9877, "protocol": "TCP"}]
    assert bridge["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    assert bridge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}
    listen = build_parser().parse_args(pod_args(bridge, pod_env(bridge))).listen
    assert listen.endswith(":9877")
    assert "--web.listen-address=0.0.0.0:9877" in bridge["args"]  # the documented spelling, not the alias
    assert not any(arg.startswith(("--listen", "--web-config-file")) for arg in bridge["args"])
    service = one(objects, "Service")
    pod_labels = workload(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert workload(objects)["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.integration
def test_the_configmap_checksum_rolls_the_pods_when_the_config_changes() -> None:
    def checksum(values: dict[str, Any]) -> str:
        return workload(manifests(values))["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    config = scenario_values("integrations")["config"]
    changed = json.loads(json.dumps(config))
    changed["targets"][0]["interval"] = "20s"
    assert re.fullmatch(r"[0-9a-f]{64}", checksum({"config": config}))
    assert checksum({"config": config}) == checksum({"config": config, "log": {"level": "debug"}})
    assert checksum({"config": config}) != checksum({"config": changed})
    assert checksum({}) != checksum({"config": config})


# --------------------------------------------------------------------------------------------------- the config


def check_in_pod_tree(objects: list[dict[str, Any]], root: Path, pod_index: int = 0) -> subprocess.CompletedProcess[str]:
    """Lay out the pod's mounted files under `root` and run `metrics-bridge check` with the pod's arguments and env.

    ConfigMap mounts get the ConfigMap's data; Secret mounts get their listed items or, without items, every file
    the config names under them (the real Secret supplies those keys). Absolute paths in the config and arguments
    are re-rooted under `root`.
    """
    pod = workload(objects)["spec"]["template"]["spec"]
    bridge = container(objects)
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    text = config_text(objects)
    named_files = [v for k, v in _walk(yaml.safe_load(text)) if k.endswith("_file")]
    for mount in bridge["volumeMounts"]:
        volume, directory = volumes[mount["name"]], root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, data in configmaps[volume["configMap"]["name"]]["data"].items():
                (directory / key).write_text(data.replace("/etc/metrics-bridge/", f"{root}/etc/metrics-bridge/"))
        elif "secret" in volume:
            items = volume["secret"].get("items")
            paths = [i["path"] for i in items] if items else [
                f[len(mount["mountPath"]) + 1 :] for f in named_files if f.startswith(mount["mountPath"] + "/")
            ]
            for path in paths:
                (directory / path).write_text("secret\n")
    for path in named_files:
        assert (root / path.lstrip("/")).is_file(), f"{path} is named by the config but no mounted Secret holds it"
    env = pod_env(bridge, pod_index)
    args = pod_args(bridge, env)
    config_path = build_parser().parse_args(args).config
    command = [sys.executable, "-m", "exporter", "check", f"--config={root}{config_path}"]
    clean_env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **env}
    return subprocess.run(command, cwd=REPO, env=clean_env, capture_output=True, text=True, timeout=60)


def _walk(node: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every (key, scalar) pair in a YAML tree."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _walk(v, str(k))]
    if isinstance(node, list):
        return [pair for v in node for pair in _walk(v, key)]
    return [(key, node)]


@pytest.mark.integration
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_metrics_bridge_check_accepts_the_config_the_configmap_carries(scenario: str, tmp_path: Path) -> None:
    objects = manifests(scenario_values(scenario))
    result = check_in_pod_tree(objects, tmp_path)
    assert result.returncode == 0, result.stderr
    assert ": OK — " in result.stdout


@pytest.mark.integration
def test_default_config_is_the_example_the_image_ships() -> None:
    assert config_text(manifests({})) == (REPO / "examples" / "config.yaml").read_text(encoding="utf-8")


@pytest.mark.integration
def test_structured_config_reaches_the_bridge_unchanged() -> None:
    config = scenario_values("integrations")["config"]
    assert yaml.safe_load(config_text(manifests({"config": config}))) == config


@pytest.mark.integration
def test_check_fails_when_the_config_names_a_file_no_secret_mounts(tmp_path: Path) -> None:
    values = scenario_values("integrations")
    values["secrets"] = [s for s in values["secrets"] if s["name"] != "billing"]
    with pytest.raises(AssertionError, match="secrets/billing/password"):
        check_in_pod_tree(manifests(values), tmp_path)


@pytest.mark.integration
def test_check_fails_on_a_config_the_bridge_rejects(tmp_path: Path) -> None:
    config = scenario_values("integrations")["config"]
    config["targets"][0]["interval"] = "5s"  # shorter than its 10s timeout
    result = check_in_pod_tree(manifests({**scenario_values("integrations"), "config": config}), tmp_path)
    assert result.returncode == 1
    assert "targets[0]" in result.stderr and "timeout" in result.stderr


@pytest.mark.integration
def test_secrets_mount_read_only_under_the_secrets_directory() -> None:
    objects = manifests(scenario_values("integrations"))
    pod = workload(objects)["spec"]["template"]["spec"]
    secret_volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["name"]: m for m in container(objects)["volumeMounts"]}
    mounted = {v["secretName"]: mounts[name]["mountPath"] for name, v in secret_volumes.items()}
    assert mounted == {s["name"]: f"/etc/metrics-bridge/secrets/{s['name']}" for s in scenario_values("integrations")["secrets"]}
    assert all(v["defaultMode"] == 0o440 for v in secret_volumes.values())


# --------------------------------------------------------------------------------------------------- sharding


@pytest.mark.integration
def test_unsharded_release_is_one_deployment_pod_without_shard_flags() -> None:
    objects = manifests({})
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    args = build_parser().parse_args(pod_args(container(objects), {}))
    assert (args.shard, args.total_shards) == (0, 1)


@pytest.mark.integration
def test_each_shard_polls_its_own_targets_and_together_they_poll_all() -> None:
    values = scenario_values("sharded")
    objects = manifests(values)
    statefulset = one(objects, "StatefulSet")
    shards = values["sharding"]["shards"]
    assert statefulset["spec"]["replicas"] == shards == 3
    assert statefulset["spec"]["serviceName"] == one(objects, "Service")["metadata"]["name"]
    bridge = container(objects)
    assert {"name": "METRICS_BRIDGE_SHARD", "valueFrom": {"fieldRef": {"fieldPath": POD_INDEX_LABEL}}} in bridge["env"]
    targets = [t.name for t in parse_config(config_text(objects)).targets]
    polled: dict[str, int] = {}
    for ordinal in range(shards):
        args = build_parser().parse_args(pod_args(bridge, pod_env(bridge, ordinal)))
        assert (args.shard, args.total_shards) == (ordinal, shards)
        mine = [t for t in targets if shard_of(t, args.total_shards) == args.shard]
        assert mine, f"shard {ordinal} polls nothing: the scenario should exercise every shard"
        for name in mine:
            assert name not in polled
            polled[name] = ordinal
    assert sorted(polled) == sorted(targets)


@pytest.mark.integration
def test_a_missing_pod_index_label_stops_the_pod_rather_than_defaulting_to_shard_0() -> None:
    bridge = container(manifests(scenario_values("sharded")))
    env = {**pod_env(bridge), "METRICS_BRIDGE_SHARD": ""}  # what the downward API gives before Kubernetes 1.28
    with pytest.raises(SystemExit):
        build_parser().parse_args(pod_args(bridge, env))


# --------------------------------------------------------------------------------------------------- operator kinds


@pytest.mark.integration
def test_service_monitor_scrapes_every_pod_as_job_metrics_bridge() -> None:
    values = scenario_values("integrations")
    objects = manifests(values)
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert service["metadata"]["labels"][spec["jobLabel"]] == "metrics-bridge"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "http"
    assert endpoint["honorLabels"] is True
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
    assert endpoint["metricRelabelings"] == values["serviceMonitor"]["metricRelabelings"]
    drop = endpoint["relabelings"][0]
    assert drop["action"] == "labeldrop"
    for label in ("namespace", "service", "pod", "container", "endpoint"):
        assert re.fullmatch(drop["regex"], label), f"the exporter pod's {label} label would reach bridged series"
    for label in ("job", "instance", "target", "level"):
        assert not re.fullmatch(drop["regex"], label)
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "tlsConfig",
                             "relabelings", "metricRelabelings"}


@pytest.mark.integration
def test_prometheus_rule_holds_exactly_the_alerts_file() -> None:
    objects = manifests(scenario_values("integrations"))
    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load((REPO / "alerts" / "metrics-bridge.rules.yml").read_text(encoding="utf-8"))
    assert rule["spec"] == {"groups": source["groups"]}
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert rules
    for item in rules:
        assert set(item) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert ("alert" in item) != ("record" in item) and isinstance(item["expr"], (str, int, float))


@pytest.mark.integration
def test_dashboards_become_configmaps_for_the_grafana_sidecar() -> None:
    objects = manifests(scenario_values("integrations"))
    dashboards = {
        key: json.loads(data)
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"
        for key, data in o["data"].items()
    }
    sources = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in (REPO / "dashboards").glob("*.json")}
    assert sources and dashboards == sources
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]
    assert len(set(names)) == len(names), names
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", n) for n in names), names
    for o in objects:
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]:
            assert o["metadata"]["annotations"] == {"grafana_folder": "Exporters"}
            assert len(json.dumps(o)) < 1024 * 1024, "a ConfigMap holds at most 1 MiB"


@pytest.mark.integration
def test_network_policy_and_disruption_budget_select_the_bridge_pods() -> None:
    objects = manifests(scenario_values("integrations"))
    pod_labels = workload(objects)["spec"]["template"]["metadata"]["labels"]
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"] == scenario_values("integrations")["networkPolicy"]["ingressFrom"]
    budget = one(objects, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget == {"maxUnavailable": 1, "selector": budget["selector"]}
    assert "minAvailable" in one(manifests({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}), "PodDisruptionBudget")["spec"]


@pytest.mark.integration
def test_web_config_mounts_its_secret_and_passes_the_flag() -> None:
    scrape_auth = {"username": {"name": "scrape", "key": "username"}, "password": {"name": "scrape", "key": "password"}}
    values = {
        "webConfig": {"enabled": True, "secretName": "metrics-bridge-web", "scheme": "HTTPS"},
        "serviceMonitor": {"enabled": True, "basicAuth": scrape_auth},
    }
    objects = manifests(values)
    bridge = container(objects)
    args = build_parser().parse_args(pod_args(bridge, pod_env(bridge)))
    assert args.web_config_file == "/etc/metrics-bridge/web/web-config.yml"
    assert "--web.config.file=/etc/metrics-bridge/web/web-config.yml" in bridge["args"]
    mount = next(m for m in bridge["volumeMounts"] if m["mountPath"] == "/etc/metrics-bridge/web")
    volume = next(v for v in workload(objects)["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "metrics-bridge-web" and mount["readOnly"] is True
    assert bridge["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTPS"}
    assert bridge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTPS"}
    endpoint = one(objects, "ServiceMonitor")["spec"]["endpoints"][0]
    assert (endpoint["scheme"], endpoint["basicAuth"]) == ("https", scrape_auth)
    require_module("kubernetes_validate").validate(workload(objects), newest_kubernetes(), strict=True)


@pytest.mark.integration
def test_with_basic_auth_the_readiness_probe_uses_the_open_healthz() -> None:
    values = {"webConfig": {"enabled": True, "secretName": "metrics-bridge-web", "basicAuth": True}}
    probe = container(manifests(values))["readinessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "http", "scheme": "HTTP"}


@pytest.mark.integration
def test_notes_tell_where_the_metrics_appear() -> None:
    notes = render(scenario_values("integrations"))["metrics-bridge/templates/NOTES.txt"]
    assert "port-forward service/metrics-bridge 9877:9877" in notes
    assert 'job="metrics-bridge"' in notes
    assert "PrometheusRule monitoring/metrics-bridge" in notes
    assert 'grafana_dashboard="1"' in notes
    sharded = render(scenario_values("sharded"))["metrics-bridge/templates/NOTES.txt"]
    assert "StatefulSet of 3 shards" in sharded and "statefulset/metrics-bridge" in sharded
