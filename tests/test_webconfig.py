"""Web config and basic auth: bcrypt one at a time, no user enumeration, bounded caches, long passwords, bad hashes."""

import base64
import threading
import time

import bcrypt
import pytest
import requests

from exporter.bridge import Bridge
from exporter.config import ConfigError, parse_config
from exporter.server import MetricsServer, create_app
from exporter.webconfig import Authenticator, load_web_config

from fakeapi import wait_until

CONFIG = "targets: [{name: t, url: 'http://127.0.0.1:1/', mappings: [{level: service, metrics: [{name: m, value: v}]}]}]"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def cost6_hash():
    return bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=6)).decode()


def test_a_malformed_bcrypt_hash_is_refused_at_load_with_its_key_path(tmp_path):
    path = tmp_path / "web.yml"
    good = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"basic_auth_users:\n  prom: '$2b$garbage'\n  ok: '{good}'\n  weak: '{good.replace('$04$', '$03$')}'\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    assert [p.split(":")[0] for p in caught.value.problems] == ["basic_auth_users.prom", "basic_auth_users.weak"]
    assert all("not a bcrypt hash" in p for p in caught.value.problems)


def test_a_password_over_72_bytes_is_answered_401_not_500(cost6_hash):
    bridge = Bridge(parse_config(CONFIG), process_metrics=False)
    server = MetricsServer(create_app(bridge, None, Authenticator({"prom": cost6_hash})), "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert requests.get(url, auth=("prom", "correct horse" + "x" * 80), timeout=5).status_code == 401
        assert requests.get(url, auth=("prom", "é" * 40), timeout=5).status_code == 401  # 80 bytes, 40 characters
        assert requests.get(url, auth=("prom", "correct horse"), timeout=5).status_code == 200
    finally:
        server.close()


def test_an_unknown_user_costs_a_bcrypt_check_of_the_same_cost_as_a_known_one(cost6_hash):
    auth = Authenticator({"prom": cost6_hash})
    assert auth.dummy_hash[:7] == cost6_hash[:7] == "$2b$06$"

    def seconds(user: str, i: int) -> float:
        started = time.perf_counter()
        assert auth.allows(basic(user, f"guess-{user}-{i}")) is False  # a new password each time: no cache
        return time.perf_counter() - started

    # Interleaved, and the fastest of each: other work on the machine only ever adds time, so the minimum is the
    # check's own cost, and both users are measured under the same conditions.
    pairs = [(seconds("prom", i), seconds("nobody", i)) for i in range(7)]
    known, unknown = min(k for k, _ in pairs), min(u for _, u in pairs)
    assert unknown > known / 3, f"unknown user {unknown * 1000:.1f} ms, known {known * 1000:.1f} ms"


def test_the_caches_are_bounded_and_guesses_do_not_evict_a_good_entry(monkeypatch):
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()
    auth = Authenticator({"prom": hashed}, cache_size=8)
    assert auth.allows(basic("prom", "right"))
    for i in range(40):
        assert not auth.allows(basic("prom", f"wrong-{i}"))
    assert len(auth._cache[False]) == 8 and len(auth._cache[True]) == 1
    calls = []
    original = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *args: calls.append(1) or original(*args))
    assert auth.allows(basic("prom", "right"))  # still cached: no bcrypt
    assert calls == []


def test_32_parallel_wrong_password_clients_do_not_starve_a_scrape_with_good_credentials(cost6_hash):
    bridge = Bridge(parse_config(CONFIG), process_metrics=False)
    bridge.start(schedule=False)
    authenticator = Authenticator({"prom": cost6_hash})
    server = MetricsServer(create_app(bridge, None, authenticator), "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    statuses: list[int] = []

    def guess(i: int) -> None:
        try:
            statuses.append(requests.get(url, auth=("prom", f"guess-{i}"), timeout=30).status_code)
        except requests.RequestException as error:
            statuses.append(repr(error))  # type: ignore[arg-type]

    try:
        assert requests.get(url, auth=("prom", "correct horse"), timeout=5).status_code == 200  # Prometheus' first scrape
        attackers = [threading.Thread(target=guess, args=(i,)) for i in range(32)]
        for thread in attackers:
            thread.start()
        wait_until(lambda: authenticator._bcrypt_lock.locked())
        started = time.monotonic()
        scrape = requests.get(url, auth=("prom", "correct horse"), timeout=5)
        elapsed = time.monotonic() - started
        assert scrape.status_code == 200 and "metrics_bridge_build_info" in scrape.text
        assert elapsed < 1.0, f"the good scrape took {elapsed:.2f}s"
        for thread in attackers:
            thread.join(60)
        assert sorted(set(statuses)) == [401]
    finally:
        bridge.stop(1)
        server.close()
