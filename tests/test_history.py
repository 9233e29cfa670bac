"""Poll history: the last polls of a target in order, and its running totals."""

from exporter.history import PollHistory, PollRecord


def test_the_history_keeps_polls_oldest_first_with_their_outcome_duration_and_series():
    history = PollHistory(length=5)
    assert history.records() == [] and (history.successes, history.failures) == (0, 0)
    history.record(100.5, 0.25, None, 200030)
    history.record(105.5, 4.0, "timeout", 200030)
    assert history.records() == [PollRecord(100.5, 0.25, None, 200030), PollRecord(105.5, 4.0, "timeout", 200030)]
    assert (history.successes, history.failures) == (1, 1)


def test_past_its_length_the_history_drops_the_oldest_polls_and_keeps_counting():
    history = PollHistory(length=3)
    for i in range(8):
        history.record(float(i), i / 10, "http_status" if i % 4 == 3 else None, i * 1000)
    assert [(r.start, r.duration, r.reason, r.series) for r in history.records()] == [
        (5.0, 0.5, None, 5000), (6.0, 0.6, None, 6000), (7.0, 0.7, "http_status", 7000),
    ]
    assert (history.successes, history.failures) == (6, 2)


def test_the_history_holds_one_set_of_arrays_whatever_the_number_of_polls():
    import tracemalloc

    history = PollHistory(length=60)
    for i in range(200):  # past the ring's length, and past the interpreter's warm-up of the code (3.11 quickens it once)
        history.record(float(i), 0.1, None, i)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for n in range(120):
            history.record(1e9 + n, 0.1 + n, None, 10**6 + n)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    here = [tracemalloc.Filter(True, "*history.py"), tracemalloc.Filter(True, __file__)]
    kept = after.filter_traces(here).compare_to(before.filter_traces(here), "filename")
    # Objects per poll would be 60 records with their floats and ints (over 200 blocks); a few blocks of the
    # interpreter's own (caches it fills once, on whichever call comes first) may still appear.
    assert sum(s.count_diff for s in kept) < 10
