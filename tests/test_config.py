"""Config: valid files load, and a bad one is rejected with every problem and its key path."""

from pathlib import Path

import pytest

from exporter.cli import demo_config_text
from exporter.config import ConfigError, load_config, parse_config
from golden import assert_golden

EXAMPLES = Path(__file__).parent.parent / "examples"

MINIMAL = """
targets:
  - name: api
    url: http://127.0.0.1:8080/metrics
    mappings:
      - level: service
        metrics:
          - {name: up_ratio, value: up}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.problems


def test_a_minimal_config_gets_the_documented_defaults():
    target = parse_config(MINIMAL).targets[0]
    assert (target.method, target.interval, target.timeout, target.jitter) == ("GET", 15.0, 10.0, 0.0)
    assert target.effective_stale_after == 45.0
    assert target.max_response_bytes == 50 * 1024 * 1024
    assert target.tls.insecure_skip_verify is False
    assert target.accept_status == [200]


def test_the_commented_example_and_the_demo_config_are_valid(monkeypatch):
    assert len(load_config(EXAMPLES / "config.yaml").targets) == 2
    monkeypatch.setenv("METRICS_BRIDGE_DEMO_URL", "http://127.0.0.1:1/api/v1/metrics")
    assert [t.name for t in parse_config(demo_config_text()).targets] == ["services", "pods", "containers"]


def test_durations_and_sizes_are_read_from_strings():
    text = MINIMAL.replace("    mappings:", "    interval: 1m30s\n    timeout: 250ms\n    max_response_bytes: 2MiB\n    mappings:")
    target = parse_config(text).targets[0]
    assert (target.interval, target.timeout, target.max_response_bytes) == (90.0, 0.25, 2 * 1024 * 1024)


def test_environment_variables_are_expanded_with_defaults(monkeypatch):
    monkeypatch.setenv("API_HOST", "10.1.2.3")
    text = MINIMAL.replace("127.0.0.1:8080", "${API_HOST}:${API_PORT:-9100}")
    assert parse_config(text).targets[0].url == "http://10.1.2.3:9100/metrics"


def test_an_unset_environment_variable_is_reported_once_with_its_key_path(monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    assert problems_of(MINIMAL.replace("http://127.0.0.1:8080", "${NOPE}")) == [
        "targets[0].url: environment variable NOPE is not set"
    ]


INVALID = sorted((Path(__file__).parent / "testdata" / "config" / "invalid").glob("*.yml"))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_each_invalid_config_gets_exactly_its_golden_messages(path):
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert_golden(path.with_suffix(".txt"), caught.value.listing() + "\n")


def test_per_target_checks_are_reported_together_with_field_errors_elsewhere():
    text = MINIMAL.replace("    mappings:", "    interval: 5s\n    timeout: 10s\n    retries: 3\n    mappings:")
    assert problems_of(text.replace("level: service", "level: Pod")) == [
        "targets[0].retries: must be a mapping with keys attempts, backoff, max_backoff, got a number",
        "targets[0].timeout: timeout (10s) must not exceed interval (5s)",
        "targets[0].mappings[0].level: unknown level 'Pod' (did you mean 'pod'?); choose one of service, pod, container, or declare it in the target's levels",
    ]


def test_an_unknown_key_gets_the_closest_valid_key():
    assert problems_of(MINIMAL.replace("    mappings:", "    intervall: 5s\n    mappings:")) == [
        "targets[0].intervall: unknown key (did you mean 'interval'?)"
    ]


def test_a_bad_jmespath_is_reported_at_the_value_key_with_the_caret_line():
    (problem,) = problems_of(MINIMAL.replace("value: up}", 'value: "a.b:c"}'))
    assert problem == "targets[0].mappings[0].metrics[0].value: invalid JMESPath expression: unexpected ':' at column 4\na.b:c\n   ^"


def test_no_message_names_a_library_class():
    problems = problems_of(MINIMAL.replace("    mappings:", "    retries: 3\n    tls: [a]\n    mappings:"))
    assert problems == [
        "targets[0].tls: must be a mapping with keys ca_file, cert_file, key_file, insecure_skip_verify, got a list",
        "targets[0].retries: must be a mapping with keys attempts, backoff, max_backoff, got a number",
    ]


def test_duplicate_target_names_and_conflicting_metric_types_are_rejected():
    second = MINIMAL.split("targets:\n")[1].replace("{name: up_ratio, value: up}", "{name: up_total, type: counter, value: up}")
    third = second.replace("{name: up_total, type: counter, value: up}", "{name: up_info, type: info}").replace("name: api", "name: b")
    problems = problems_of(MINIMAL.replace("up_ratio", "up_info") + second + third)
    assert problems == [
        "targets[1].name: duplicate target name 'api' (first at targets[0])",
        "targets[2].mappings[0].metrics[0].type: 'up_info' is of type info here but gauge at targets[0].mappings[0].metrics[0]",
    ]


def test_levels_need_their_kubernetes_labels():
    text = MINIMAL.replace("level: service", "level: container\n        labels: {pod: p}")
    assert problems_of(text) == ["targets[0].mappings[0].metrics[0]: container-level metric 'up_ratio' needs label(s) container"]


def test_an_undeclared_level_is_rejected_and_a_declared_one_accepted():
    text = MINIMAL.replace("level: service", "level: node")
    assert "unknown level 'node'" in problems_of(text)[0]
    assert parse_config(text.replace("    mappings:", "    levels: [node]\n    mappings:")).targets[0].levels == ["node"]


def test_a_label_set_twice_on_one_series_is_rejected():
    text = MINIMAL.replace("level: service", "level: service\n        each: [{path: items, labels: {svc: name}}]\n        labels: {svc: other}")
    assert problems_of(text) == ["targets[0].mappings[0].labels.svc: label 'svc' is already set at mappings[0].each[0].labels.svc"]


def test_counter_and_info_names_follow_prometheus_conventions():
    assert "must end in _total" in problems_of(MINIMAL.replace("value: up}", "value: up, type: counter}"))[0]
    assert "must end in _info" in problems_of(MINIMAL.replace("value: up}", "type: info}"))[0]
    assert "for counters only" in problems_of(MINIMAL.replace("up_ratio", "up_total"))[0]


def test_self_metric_names_are_reserved():
    assert "reserved" in problems_of(MINIMAL.replace("up_ratio", "metrics_bridge_up"))[0]


def test_timeout_longer_than_interval_is_rejected():
    text = MINIMAL.replace("    mappings:", "    interval: 5s\n    timeout: 10s\n    mappings:")
    assert problems_of(text) == ["targets[0].timeout: timeout (10s) must not exceed interval (5s)"]


def test_an_unreadable_secret_file_is_rejected_with_its_key_path(tmp_path):
    text = MINIMAL.replace("    mappings:", f"    auth: {{bearer_token_file: {tmp_path}/missing}}\n    mappings:")
    (problem,) = problems_of(text)
    assert problem.startswith("targets[0].auth.bearer_token_file: cannot read secret file")


def test_two_authentication_schemes_at_once_are_rejected():
    text = MINIMAL.replace("    mappings:", "    auth: {bearer_token: abc, basic: {username: u, password: p}}\n    mappings:")
    assert "choose one authentication scheme" in problems_of(text)[0]


def test_invalid_yaml_reports_line_and_column():
    (problem,) = problems_of("targets:\n  - name: [unclosed\n")
    assert problem.startswith("<yaml> line 3, column 1:")


def test_a_file_that_is_not_a_mapping_is_rejected():
    assert problems_of("- just\n- a list\n") == ["<root>: the file must hold a mapping with a 'targets' list"]


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_a_commented_out_block_means_its_defaults():
    assert parse_config("scheduler:\n" + MINIMAL).scheduler.max_workers is None


def test_secrets_are_not_shown_in_the_config_repr():
    text = MINIMAL.replace("    mappings:", "    auth: {bearer_token: s3cr3t-t0ken}\n    mappings:")
    config = parse_config(text)
    assert "s3cr3t-t0ken" not in repr(config)
    assert "s3cr3t-t0ken" not in str(config.model_dump())


def one_metric(name: str, type_: str = "gauge", url: str = "http://127.0.0.1:8080/metrics") -> str:
    value = "" if type_ == "info" else ", value: v"
    return MINIMAL.replace("http://127.0.0.1:8080/metrics", url).replace("{name: up_ratio, value: up}", f"{{name: {name}, type: {type_}{value}}}")


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://127.0.0.1:99999/ok", "port '99999' is not a number in 1-65535"),
        ("http://user:hunter22@127.0.0.1:99999/ok", "port '99999' is not a number in 1-65535"),
        ("http://127.0.0.1:http/ok", "port 'http' is not a number in 1-65535"),
        ("http://127.0.0.1:0/ok", "port 0 is not a port a server listens on (use 1-65535)"),
        ("http://:8080/ok", "the URL has no host"),
        ("http://[::1/ok", "host '[::1' is not valid: Invalid IPv6 URL"),
    ],
)
def test_a_url_whose_host_or_port_cannot_be_used_is_refused_at_check(url, problem):
    assert problems_of(one_metric("up_ratio", url=url)) == [f"targets[0].url: {problem}"]


def test_a_url_with_a_port_in_range_is_accepted():
    assert parse_config(one_metric("up_ratio", url="http://[::1]:65535/ok")).targets[0].url == "http://[::1]:65535/ok"


@pytest.mark.parametrize(
    "name, type_, owner",
    [
        ("process_open_fds", "gauge", "process_open_fds"),
        ("process_cpu_seconds_total", "counter", "process_cpu_seconds"),
        ("process_cpu_seconds", "gauge", "process_cpu_seconds"),
        ("python_gc_collections_created", "gauge", "python_gc_collections"),
        ("python_info", "info", "python_info"),
    ],
)
def test_names_the_process_platform_and_gc_collectors_serve_are_refused(name, type_, owner):
    assert problems_of(one_metric(name, type_)) == [
        f"targets[0].mappings[0].metrics[0].name: {name!r} clashes with {owner!r}, which the bridge's own "
        "process/platform/gc collectors serve (choose another name)"
    ]


def test_the_refused_names_come_from_the_collectors_themselves():
    from prometheus_client import CollectorRegistry, generate_latest

    from exporter.families import register_standard_collectors, standard_collector_names

    registry = CollectorRegistry()
    register_standard_collectors(registry)
    served = {line.split()[2] for line in generate_latest(registry).decode().splitlines() if line.startswith("# TYPE")}
    assert served and served <= set(standard_collector_names())


def test_openmetrics_family_clashes_are_refused_wherever_the_metrics_are():
    text = MINIMAL.replace(
        "          - {name: up_ratio, value: up}\n",
        "          - {name: jobs, value: a}\n          - {name: jobs_total, type: counter, value: b}\n"
        "          - {name: build_info, type: info}\n          - {name: build, value: c}\n",
    )
    second = MINIMAL.split("targets:\n")[1].replace("name: api", "name: other").replace("{name: up_ratio, value: up}", "{name: jobs_created, value: d}")
    assert problems_of(text + second) == [
        "targets[0].mappings[0].metrics[1].name: 'jobs_total' (counter) clashes with 'jobs' at targets[0].mappings[0].metrics[0]: "
        "in OpenMetrics both claim 'jobs', which Prometheus rejects (rename one)",
        "targets[0].mappings[0].metrics[3].name: 'build' (gauge) clashes with 'build_info' at targets[0].mappings[0].metrics[2]: "
        "in OpenMetrics both claim 'build', which Prometheus rejects (rename one)",
        "targets[1].mappings[0].metrics[0].name: 'jobs_created' (gauge) clashes with 'jobs_total' at targets[0].mappings[0].metrics[1]: "
        "in OpenMetrics both claim 'jobs_created', which Prometheus rejects (rename one)",
    ]


def test_the_same_metric_in_two_targets_is_one_family_not_a_clash():
    second = MINIMAL.split("targets:\n")[1].replace("name: api", "name: other")
    assert len(parse_config(MINIMAL + second).targets) == 2


def test_a_yaml_alias_bomb_is_rejected_in_under_two_seconds():
    import time

    text = (Path(__file__).parent / "testdata" / "config" / "alias-bomb.yml").read_text()
    started = time.monotonic()
    problems = problems_of(text)
    assert time.monotonic() - started < 2.0
    assert problems == [
        "<yaml>: aliases expand the document to more than 100000 nodes (28 written): "
        "write the repeated parts out, or use fewer aliases of aliases"
    ]


def test_a_recursive_alias_is_rejected():
    assert problems_of("targets: &t [*t]\n") == ["<yaml>: an alias refers to a node that contains it (a recursive document)"]


def test_anchors_and_merge_keys_for_shared_blocks_still_work():
    text = """
targets:
  - &first
    name: a
    url: http://127.0.0.1:1/a
    interval: 30s
    mappings: &cpu
      - level: service
        metrics: [{name: up_ratio, value: up}]
  - {<<: *first, name: b, url: "http://127.0.0.1:1/b"}
  - {name: c, url: "http://127.0.0.1:1/c", mappings: *cpu}
"""
    config = parse_config(text)
    assert [(t.name, t.interval, len(t.mappings)) for t in config.targets] == [("a", 30.0, 1), ("b", 30.0, 1), ("c", 15.0, 1)]


def test_the_example_in_the_configuration_docs_is_what_check_prints():
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    shown = docs.split("## How a config is checked", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    lines = [line.removeprefix("  ") for line in shown.rstrip().splitlines()]
    assert lines[0] == "metrics-bridge: invalid configuration my.yaml:"
    golden = (Path(__file__).parent / "testdata" / "config" / "invalid" / "docs-example.txt").read_text()
    assert "\n".join(lines[1:]) + "\n" == golden


def test_a_body_without_post_is_reported_once():
    text = MINIMAL.replace("    mappings:", "    body: {q: 1}\n    mappings:")
    assert problems_of(text) == ["targets[0]: a JSON body needs method: POST"]
