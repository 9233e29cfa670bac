"""The large-poll gate: a bounded number of polls hold a large parsed response at once, waiters go in turn, inside
their deadline, and a poll that cannot get a slot in time fails alone as a timeout."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ConfigError, parse_config
from exporter.largepolls import LargePollGate, SlotTimeout
from fakeapi import Reply, wait_until

LARGE = 1000  # bytes: the gates below call a response of 1000 bytes or more large


def far() -> float:
    return time.monotonic() + 30


def admit_on_thread(ticket, size: int = LARGE):  # type: ignore[no-untyped-def]
    """Admit `size` bytes on a thread; the returned list gets "ok" or the exception."""
    outcome: list[object] = []

    def run() -> None:
        try:
            ticket.admit(size)
            outcome.append("ok")
        except Exception as exc:  # noqa: BLE001 — the test reads it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_small_response_takes_no_slot() -> None:
    gate = LargePollGate(1, LARGE)
    with gate.ticket(far()) as ticket:
        ticket.admit(LARGE - 1)
        assert not ticket.held and gate.running == 0


def test_a_large_response_takes_a_slot_that_the_end_of_the_poll_gives_back() -> None:
    gate = LargePollGate(1, LARGE)
    with gate.ticket(far()) as ticket:
        ticket.admit(LARGE)
        assert ticket.held and gate.running == 1
    assert gate.running == 0


def test_a_second_large_poll_waits_for_the_first_to_end_and_reports_how_long() -> None:
    gate = LargePollGate(1, LARGE)
    first = gate.ticket(far())
    first.admit(LARGE)
    waits: list[float] = []
    second = gate.ticket(far(), waits.append)
    thread, outcome = admit_on_thread(second)
    wait_until(lambda: gate.waiting == 1)
    assert outcome == [] and gate.running == 1, "one slot: the second poll must not parse yet"
    first.release()
    thread.join(10)
    assert outcome == ["ok"] and second.held and gate.running == 1 and gate.waiting == 0
    assert len(waits) == 1 and waits[0] > 0 and second.waited == waits[0]
    second.release()
    assert gate.running == 0


def test_waiting_polls_get_their_slots_in_the_order_they_asked() -> None:
    gate = LargePollGate(1, LARGE)
    holder = gate.ticket(far())
    holder.admit(LARGE)
    tickets = [gate.ticket(far()) for _ in range(3)]
    threads = []
    for count, ticket in enumerate(tickets, 1):
        threads.append(admit_on_thread(ticket))
        wait_until(lambda: gate.waiting == count)  # noqa: B023 — read at once, inside this iteration
    order = []
    holder.release()
    for ticket, (thread, outcome) in zip(tickets, threads):
        thread.join(10)
        assert outcome == ["ok"]
        order.append(tickets.index(ticket))
        assert [t.held for t in tickets] == [t is ticket for t in tickets], "exactly the oldest waiter holds the slot"
        ticket.release()
    assert order == [0, 1, 2]


def test_a_poll_still_waiting_at_its_deadline_gets_a_timeout_and_leaves_the_queue() -> None:
    gate = LargePollGate(1, LARGE)
    holder = gate.ticket(far())
    holder.admit(LARGE)
    waits: list[float] = []
    late = gate.ticket(time.monotonic() + 0.05, waits.append)
    with pytest.raises(SlotTimeout):
        late.admit(LARGE)
    assert not late.held and gate.waiting == 0
    assert len(waits) == 1 and waits[0] >= 0.04
    holder.release()
    assert gate.running == 0, "the slot was not handed to the poll that gave up"
    with gate.ticket(far()) as next_poll:
        next_poll.admit(LARGE)
        assert next_poll.held


def test_pages_or_items_that_together_come_to_the_threshold_make_the_poll_large() -> None:
    gate = LargePollGate(1, LARGE)
    poll = gate.ticket(far())
    poll.admit(LARGE // 2)  # page 1
    assert not poll.held
    poll.admit(LARGE // 2)  # page 2: the poll now holds both documents
    assert poll.held and poll.parsed == LARGE and gate.running == 1
    poll.release()


def test_concurrency_zero_means_no_limit() -> None:
    gate = LargePollGate(0, LARGE)
    tickets = [gate.ticket(time.monotonic() + 1) for _ in range(20)]
    for ticket in tickets:
        ticket.admit(10 * LARGE)
    assert gate.running == 20 and gate.waiting == 0


def test_one_poll_takes_one_slot_however_many_of_its_threads_parse_large_responses() -> None:
    gate = LargePollGate(2, LARGE)
    poll = gate.ticket(far())
    threads = [admit_on_thread(poll) for _ in range(8)]  # a discovery fan-out: items parsed on 8 threads
    for thread, outcome in threads:
        thread.join(10)
        assert outcome == ["ok"]
    assert gate.running == 1
    poll.release()
    poll.release()  # a second release (the poller's finally after an error path) gives back nothing more
    assert gate.running == 0


def test_a_reload_that_raises_the_limit_lets_a_waiting_poll_through() -> None:
    gate = LargePollGate(1, LARGE)
    holder = gate.ticket(far())
    holder.admit(LARGE)
    thread, outcome = admit_on_thread(gate.ticket(far()))
    wait_until(lambda: gate.waiting == 1)
    gate.configure(2, LARGE)
    thread.join(10)
    assert outcome == ["ok"] and gate.running == 2 and gate.slots == 2


def test_closing_the_gate_at_shutdown_stops_every_waiting_poll_instead_of_letting_it_parse() -> None:
    gate = LargePollGate(1, LARGE)
    holder = gate.ticket(far())
    holder.admit(LARGE)
    waiters = [admit_on_thread(gate.ticket(far())) for _ in range(3)]
    wait_until(lambda: gate.waiting == 3)
    gate.close()
    for thread, outcome in waiters:
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], SlotTimeout), "woken at once, long before the deadline"
    assert gate.waiting == 0 and gate.running == 1
    with pytest.raises(SlotTimeout):
        gate.ticket(far()).admit(LARGE)  # nothing new starts parsing during the shutdown
    holder.release()
    assert gate.running == 0


# ---------------------------------------------------------------------------------------------- in the bridge, over HTTP
def gate_config(api, concurrency: int = 1, timeout: str = "5s") -> str:  # type: ignore[no-untyped-def]
    return f"""
scheduler:
  large_poll_concurrency: {concurrency}
  large_poll_bytes: 1KiB
targets:
  - name: big
    url: {api.url('/big')}
    timeout: {timeout}
    retries: {{attempts: 1}}
    mappings:
      - each: items
        level: pod
        labels: {{pod: name}}
        metrics:
          - {{name: pod_cpu_usage_cores, help: CPU., value: cpu}}
  - name: small
    url: {api.url('/small')}
    timeout: {timeout}
    mappings:
      - each: items
        level: pod
        labels: {{pod: name}}
        metrics:
          - {{name: pod_gpu_utilization_ratio, help: GPU., value: gpu}}
"""


def big_body(pods: int = 100) -> dict:  # type: ignore[type-arg]
    return {"items": [{"name": f"pod-{i:04d}", "cpu": i / 100} for i in range(pods)]}


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url + "/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_a_poll_whose_large_response_finds_the_slot_taken_waits_for_it_then_publishes(api, run_bridge) -> None:  # type: ignore[no-untyped-def]
    api.routes["/big"] = Reply(big_body())
    running = run_bridge(gate_config(api), schedule=False)
    gate = running.bridge.gate
    before = samples(running.url)
    assert before[("metrics_bridge_large_poll_wait_seconds_total", (("target", "big"),))] == 0
    assert before[("metrics_bridge_large_polls_running", ())] == 0
    other_poll = gate.ticket(far())
    other_poll.admit(10_000)  # another target's large poll is mapping
    polled: list[bool] = []
    thread = threading.Thread(target=lambda: polled.append(running.bridge.poll_now("big")))
    thread.start()
    wait_until(lambda: gate.waiting == 1)
    assert len(api.requests) == 1, "the response was fetched before the poll queued: a slow API holds no slot"
    during = samples(running.url)
    assert during[("metrics_bridge_large_polls_waiting", ())] == 1
    assert during[("metrics_bridge_large_polls_running", ())] == 1
    other_poll.release()
    thread.join(10)
    assert polled == [True]
    after = samples(running.url)
    assert after[("pod_cpu_usage_cores", (("level", "pod"), ("pod", "pod-0042"), ("target", "big")))] == 0.42
    assert after[("metrics_bridge_large_poll_wait_seconds_total", (("target", "big"),))] > 0
    assert after[("metrics_bridge_large_polls_running", ())] == 0 and after[("metrics_bridge_large_polls_waiting", ())] == 0


def test_a_poll_still_waiting_when_its_timeout_ends_fails_as_a_timeout_and_other_targets_go_on(api, run_bridge) -> None:  # type: ignore[no-untyped-def]
    api.routes["/big"] = Reply(big_body())
    api.routes["/small"] = Reply({"items": [{"name": "p", "gpu": 0.5}]})
    running = run_bridge(gate_config(api, timeout="300ms"), schedule=False)
    gate = running.bridge.gate
    holder = gate.ticket(far())
    holder.admit(10_000)
    try:
        assert running.bridge.poll_now("big") is False
        assert running.bridge.poll_now("small") is True, "a response under large_poll_bytes never waits"
    finally:
        holder.release()
    status = running.bridge.pollers["big"].status
    assert status.last_outcome == "failure (timeout)"
    assert "large-poll slot" in status.last_error and "scheduler.large_poll_concurrency" in status.last_error
    after = samples(running.url)
    assert after[("metrics_bridge_poll_failures_total", (("reason", "timeout"), ("target", "big")))] == 1
    assert after[("pod_gpu_utilization_ratio", (("level", "pod"), ("pod", "p"), ("target", "small")))] == 0.5
    assert gate.running == 0 and gate.waiting == 0
    assert running.bridge.poll_now("big") is True, "with the slot free, the next poll goes through"


def test_every_poll_gives_its_slot_back_whether_it_published_or_failed(api, run_bridge) -> None:  # type: ignore[no-untyped-def]
    running = run_bridge(gate_config(api), schedule=False)
    api.routes["/big"] = Reply(big_body())
    assert running.bridge.poll_now("big") is True
    api.routes["/big"] = Reply({"items": [{"name": "", "cpu": 1}] * 100})  # large, and an empty pod label: mapping fails
    assert running.bridge.poll_now("big") is False
    assert running.bridge.pollers["big"].status.last_outcome == "failure (mapping)"
    assert running.bridge.gate.running == 0


def test_the_limits_are_config_keys_checked_with_their_path_and_applied_by_a_reload(api, run_bridge) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as error:
        parse_config(gate_config(api).replace("large_poll_concurrency: 1", "large_poll_concurrency: -1").replace("1KiB", "lots"))
    text = str(error.value)
    assert "scheduler.large_poll_concurrency" in text and "scheduler.large_poll_bytes" in text
    running = run_bridge(gate_config(api), schedule=False)
    assert (running.bridge.gate.slots, running.bridge.gate.threshold) == (1, 1024)
    running.bridge.reload(parse_config(gate_config(api, concurrency=3).replace("1KiB", "2MiB")))
    assert (running.bridge.gate.slots, running.bridge.gate.threshold) == (3, 2 << 20)


def test_by_default_one_poll_at_a_time_may_hold_a_response_of_a_mebibyte_or_more(api) -> None:  # type: ignore[no-untyped-def]
    without_block = gate_config(api).split("targets:", 1)[1]
    scheduler = parse_config("targets:" + without_block).scheduler
    assert (scheduler.large_poll_concurrency, scheduler.large_poll_bytes) == (1, 1 << 20)


def test_a_discovery_poll_whose_items_answer_large_responses_on_many_threads_takes_one_slot(api, run_bridge) -> None:  # type: ignore[no-untyped-def]
    names = [f"svc-{i}" for i in range(6)]
    api.routes["/services"] = Reply({"services": [{"name": n} for n in names]})
    for index, name in enumerate(names):  # each item's response is large, and padded with a field nobody reads
        api.routes[f"/services/{name}/metrics"] = Reply({"rps": index + 1, "padding": "x" * 2000})
    running = run_bridge(f"""
scheduler: {{large_poll_concurrency: 1, large_poll_bytes: 1KiB}}
targets:
  - name: svc
    url: {api.url('/services')}/{{{{ item.name }}}}/metrics
    timeout: 5s
    discovery: {{url: {api.url('/services')}, each: services, labels: {{service: name}}, concurrency: 6}}
    mappings:
      - level: service
        metrics: [{{name: service_requests_per_second, help: RPS., value: rps}}]
""", schedule=False)
    # With one slot, items that each took their own would wait for each other until the timeout.
    assert running.bridge.poll_now("svc") is True
    after = samples(running.url)
    served = {labels: v for (name, labels), v in after.items() if name == "service_requests_per_second"}
    assert sorted(served.values()) == [1, 2, 3, 4, 5, 6], "every item mapped: none timed out waiting for its own poll"
    assert after[("metrics_bridge_discovery_item_failures_total", (("reason", "timeout"), ("target", "svc")))] == 0
    assert running.bridge.gate.running == 0
