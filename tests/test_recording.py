"""Recording, collecting and restoring: deltas, merges, drops and the cumulative view."""

import logging
import math
import threading
from datetime import timedelta

import pytest
from freezegun import freeze_time

import impactagent


@pytest.fixture
def agent():
    return impactagent.Agent(app_name="shop", environment="production")


def samples_of(snapshot, name):
    """{label values: sample} for one metric of a snapshot."""
    for metric in snapshot.metrics:
        if metric.name == name:
            return {s.child.label_values: s for s in metric.samples}
    return {}


# -- counters ------------------------------------------------------------------------------


def test_counter_deltas_since_last_collect(agent):
    checkouts = agent.counter("checkout_total", "Checkouts", labels=("route",))
    cart = checkouts.labels(route="/cart")
    cart.inc()
    cart.inc(4)
    checkouts.labels("/pay").inc(2)
    first = samples_of(agent.collect(), "checkout_total")
    assert {k: s.value for k, s in first.items()} == {("/cart",): 5, ("/pay",): 2}
    cart.inc()
    second = samples_of(agent.collect(), "checkout_total")
    assert {k: s.value for k, s in second.items()} == {("/cart",): 1}
    assert agent.collect().metrics == ()


def test_children_are_cached_by_position_and_by_name(agent):
    family = agent.counter("c", "h", labels=("a", "b"))
    child = family.labels("x", "y")
    assert family.labels(a="x", b="y") is child
    assert family.labels(b="y", a="x") is child  # keyword order does not matter
    assert family.labels("x", "y") is child


def test_non_string_label_values_are_converted_once(agent):
    family = agent.counter("requests_total", "Requests", labels=("status",))
    family.labels(status=200).inc()
    family.labels(status="200").inc()
    family.labels(200).inc()
    assert [(c.label_values, c.value) for c in family.series()] == [(("200",), 3)]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda f: f.labels(), ValueError, r"takes 1 label values \('route',\), got 0"),
        (lambda f: f.labels("a", "b"), ValueError, "takes 1 label values"),
        (lambda f: f.labels(path="/"), ValueError, r"missing \['route'\], unexpected \['path'\]"),
        (lambda f: f.labels("/", route="/"), TypeError, "not both"),
        (lambda f: f.labels(route=None), TypeError, "needs a string value"),
        (lambda f: f.labels(route=["/"]), TypeError, "needs a string value"),
        (lambda f: f.inc(), ValueError, r"call .labels\(...\).inc\(\)"),
    ],
)
def test_wrong_labels_are_explained(agent, call, error, message):
    family = agent.counter("checkout_total", "Checkouts", labels=("route",))
    with pytest.raises(error, match=message):
        call(family)


@pytest.mark.parametrize(
    ("amount", "error"),
    [(-1, ValueError), (1.5, TypeError), (1.0, TypeError), (True, TypeError),
     ("1", TypeError), (None, TypeError)],
)
def test_bad_counter_increments_raise_and_record_nothing(agent, amount, error):
    jobs = agent.counter("jobs_total", "Jobs")
    with pytest.raises(error, match="inc\\(\\) takes a non-negative int"):
        jobs.inc(amount)
    assert agent.collect().metrics == ()


def test_integer_like_increments_are_accepted(agent):
    class Index:
        def __index__(self):
            return 3

    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(0)
    jobs.inc(Index())
    assert samples_of(agent.collect(), "jobs_total")[()].value == 3


# -- gauges --------------------------------------------------------------------------------


def test_gauge_sends_last_value_only_when_set(agent):
    depth = agent.gauge("queue_depth", "Jobs waiting")
    assert agent.collect().metrics == ()  # never set: nothing to send
    depth.set(3)
    depth.set(12.5)
    assert samples_of(agent.collect(), "queue_depth")[()].value == 12.5
    assert agent.collect().metrics == ()  # unchanged since: nothing new
    depth.inc(2)
    depth.dec(0.5)
    assert samples_of(agent.collect(), "queue_depth")[()].value == 14.0


def test_gauge_restore_keeps_a_newer_value(agent):
    depth = agent.gauge("queue_depth", "Jobs waiting")
    depth.set(1)
    failed = agent.collect()
    depth.set(2)  # set after the collect that failed
    agent.restore(failed)
    assert samples_of(agent.collect(), "queue_depth")[()].value == 2


def test_gauge_restore_resends_the_unsent_value(agent):
    depth = agent.gauge("queue_depth", "Jobs waiting")
    depth.set(7)
    agent.restore(agent.collect())
    assert samples_of(agent.collect(), "queue_depth")[()].value == 7


# -- histograms ----------------------------------------------------------------------------


def test_histogram_counts_into_le_buckets(agent):
    latency = agent.histogram("checkout_seconds", "Latency", buckets=(0.1, 0.5, 1))
    for value in (0.05, 0.1, 0.3, 0.5, 0.9, 7):
        latency.observe(value)
    sample = samples_of(agent.collect(), "checkout_seconds")[()]
    # Per-bucket counts: <=0.1 holds 0.05 and 0.1 (le is inclusive), +Inf holds 7.
    assert sample.counts == (2, 2, 1, 1)
    assert sample.count == 6
    assert sample.sum == pytest.approx(8.85)
    assert latency.count == 6
    assert latency.cumulative_buckets() == [(0.1, 2), (0.5, 4), (1.0, 5), (math.inf, 6)]


def test_histogram_time_observes_elapsed_seconds(agent):
    latency = agent.histogram("work_seconds", "Work")
    with latency.time():
        pass

    @latency.time()
    def work():
        return "done"

    assert work() == "done"
    assert work.__name__ == "work"
    assert latency.count == 2
    assert 0 <= latency.sum < 1


def test_histogram_time_on_async_functions(agent):
    import asyncio

    latency = agent.histogram("work_seconds", "Work")

    @latency.time()
    async def work():
        await asyncio.sleep(0.01)
        return 5

    assert asyncio.run(work()) == 5
    assert latency.count == 1 and latency.sum >= 0.009


# -- dropped values ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_dropped_and_counted(agent, bad, caplog):
    gauge = agent.gauge("g", "G")
    histogram = agent.histogram("h", "H")
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        gauge.set(bad)
        gauge.inc(bad)
        histogram.observe(bad)
        histogram.observe(bad)
    assert agent.statistics()["dropped"] == {"non_finite_value": 4}
    assert agent.collect().metrics == ()
    assert gauge.value is None and histogram.count == 0
    # One warning per metric, not one per value.
    assert len([r for r in caplog.records if "NaN or infinite" in r.getMessage()]) == 2


def test_non_numbers_are_type_errors(agent):
    with pytest.raises(TypeError, match="set\\(\\) takes a number, got str"):
        agent.gauge("g", "G").set("1")
    with pytest.raises(TypeError, match="observe\\(\\) takes a number, got NoneType"):
        agent.histogram("h", "H").observe(None)


def test_cardinality_limit_drops_new_label_sets_and_counts_them(caplog):
    agent = impactagent.Agent(app_name="shop", max_series_per_metric=3)
    users = agent.counter("logins_total", "Logins", labels=("user",))
    latency = agent.histogram("latency", "Latency", labels=("user",))
    with caplog.at_level(logging.WARNING, logger="impactagent"):
        for i in range(10):
            users.labels(user=f"u{i}").inc(2)
            latency.labels(f"u{i}").observe(0.2)
    assert len(users.series()) == 3 and len(latency.series()) == 3
    # Drops are counted in events: 7 inc(2) lose 14 increments, 7 observe() 7 observations.
    assert agent.statistics()["dropped"] == {"cardinality_limit": 21}
    counts = samples_of(agent.collect(), "logins_total")
    assert {k: s.value for k, s in counts.items()} == {("u0",): 2, ("u1",): 2, ("u2",): 2}
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("past the metric's series limit" in w for w in warnings) == 2
    # Series that existed before the limit keep recording.
    users.labels(user="u1").inc()
    assert samples_of(agent.collect(), "logins_total")[("u1",)].value == 1
    # Bad input is still an error past the limit.
    with pytest.raises(ValueError):
        users.labels(user="u99").inc(-1)


# -- flags ---------------------------------------------------------------------------------


def test_flag_counts_and_variants(agent):
    agent.record_flag("new-checkout", enabled=True, variant="blue")
    agent.record_flag("new-checkout", enabled=True, variant="blue")
    agent.record_flag("new-checkout", enabled=False, variant="disabled")
    agent.record_flag("new-checkout", enabled=False)
    agent.record_flag("dark-mode", True)
    toggles = agent.collect().toggles
    assert toggles == {
        "new-checkout": impactagent.ToggleDelta(2, 2, {"blue": 2, "disabled": 1}),
        "dark-mode": impactagent.ToggleDelta(1, 0, {}),
    }
    agent.record_flag("dark-mode", False)
    assert agent.collect().toggles == {"dark-mode": impactagent.ToggleDelta(0, 1, {})}


def test_bad_flag_input(agent):
    with pytest.raises(TypeError, match="flag name must be a non-empty str"):
        agent.record_flag("", True)
    with pytest.raises(TypeError, match="variant must be a variant name"):
        agent.record_flag("f", True, variant=3)
    assert agent.collect().toggles == {}


def test_flag_limit_drops_and_counts():
    agent = impactagent.Agent(app_name="shop", max_flags=2)
    for name in ("a", "b", "c", "c", "d"):
        agent.record_flag(name, True)
    assert set(agent.collect().toggles) == {"a", "b"}
    assert agent.statistics()["dropped"] == {"flag_limit": 3}


def test_flag_restore_merges_counts_and_keeps_oldest_start(agent):
    agent.record_flag("f", True, "blue")
    failed = agent.collect()
    agent.record_flag("f", False, "red")
    agent.restore(failed)
    merged = agent.collect()
    assert merged.toggles == {"f": impactagent.ToggleDelta(1, 1, {"blue": 1, "red": 1})}
    assert merged.start == failed.start
    assert merged.stop >= failed.stop


def test_a_bucket_never_stops_before_it_starts_when_the_clock_steps_back():
    with freeze_time("2026-11-25 10:00:00") as clock:
        windowed = impactagent.Agent(app_name="shop")
        windowed.record_flag("f", True)
        clock.tick(60)
        first = windowed.collect()
        clock.move_to("2026-11-25 09:59:30")  # the wall clock steps back 90 s
        windowed.record_flag("f", True)
        stepped = windowed.build_payloads(windowed.collect())[0].document["bucket"]
        clock.move_to("2026-11-25 10:02:00")  # and catches up
        caught_up = windowed.build_payloads(windowed.collect())[0].document["bucket"]
    assert first.stop == first.start + timedelta(seconds=60)
    assert stepped["start"] == stepped["stop"] == "2026-11-25T10:01:00.000Z"
    assert stepped["toggles"]["f"]["yes"] == 1
    assert caught_up["start"] == "2026-11-25T10:01:00.000Z"
    assert caught_up["stop"] == "2026-11-25T10:02:00.000Z"


def test_a_restored_window_keeps_its_start_and_never_stops_before_it_after_a_step_back():
    with freeze_time("2026-11-25 10:00:00") as clock:
        windowed = impactagent.Agent(app_name="shop")
        windowed.record_flag("f", True)
        clock.tick(60)
        failed = windowed.collect()
        clock.move_to("2026-11-25 09:59:30")  # 30 s before the failed window's start
        windowed.restore(failed)
        bucket = windowed.build_payloads(windowed.collect())[0].document["bucket"]
    assert bucket["start"] == "2026-11-25T10:00:00.000Z"
    assert bucket["stop"] >= bucket["start"]
    assert bucket["toggles"]["f"]["yes"] == 1


# -- restore as a merge --------------------------------------------------------------------


def test_restore_adds_deltas_back_without_double_counting(agent):
    jobs = agent.counter("jobs_total", "Jobs")
    latency = agent.histogram("lat", "Lat", buckets=(1,))
    jobs.inc(5)
    latency.observe(0.5)
    failed = agent.collect()
    jobs.inc(2)
    latency.observe(3)
    agent.restore(failed)
    merged = agent.collect()
    assert samples_of(merged, "jobs_total")[()].value == 7
    histogram = samples_of(merged, "lat")[()]
    assert histogram.counts == (1, 1) and histogram.sum == pytest.approx(3.5)
    assert agent.collect().is_empty


def test_several_outstanding_snapshots_restore_in_any_order(agent):
    jobs = agent.counter("jobs_total", "Jobs")
    jobs.inc(1)
    first = agent.collect()
    jobs.inc(10)
    second = agent.collect()
    jobs.inc(100)
    agent.restore(second)
    agent.restore(first)
    assert samples_of(agent.collect(), "jobs_total")[()].value == 111


def test_cumulative_view_survives_collects_and_does_not_change_what_is_sent(agent):
    jobs = agent.counter("jobs_total", "Jobs", labels=("queue",))
    jobs.labels("a").inc(3)
    agent.record_flag("f", True)
    agent.collect()
    jobs.labels("a").inc(2)
    # Read the cumulative view many times: a scrape must not drain anything.
    for _ in range(3):
        assert jobs.labels("a").value == 5
        assert agent.metrics.get("jobs_total").series()[0].value == 5
        assert agent.recorder.flags.cumulative()["f"].yes == 1
    assert samples_of(agent.collect(), "jobs_total")[("a",)].value == 2


# -- the Unleash SDK names -----------------------------------------------------------------


def test_unleash_sdk_names(agent):
    agent.define_counter("purchases", "Purchases", labels=("plan",))
    agent.define_gauge("pool", "Pool size")
    agent.define_histogram("lat", "Latency", buckets=[0.5])
    agent.increment_counter("purchases", 2, labels={"plan": "pro"})
    agent.update_gauge("pool", 4)
    agent.observe_histogram("lat", 0.2)
    snapshot = agent.collect()
    assert samples_of(snapshot, "purchases")[("pro",)].value == 2
    assert samples_of(snapshot, "pool")[()].value == 4
    assert samples_of(snapshot, "lat")[()].counts == (1, 0)
    with pytest.raises(ValueError, match="no counter named 'pool' \\(found a gauge\\)"):
        agent.increment_counter("pool")
    with pytest.raises(ValueError, match="define it with define_histogram"):
        agent.observe_histogram("missing", 1)


# -- races ---------------------------------------------------------------------------------

THREADS = 4
ROUNDS = 20_000


def test_no_increment_lost_or_doubled_while_collecting_and_restoring(agent):
    """Recorders hammer while a collector collects and randomly fails (restores) in a loop."""
    import random

    counter = agent.counter("hits_total", "Hits", labels=("worker",))
    histogram = agent.histogram("sizes", "Sizes", labels=("worker",), buckets=(1, 10))
    gauge = agent.gauge("last", "Last")
    stop = threading.Event()
    delivered = {"counter": {}, "hist": {}, "flags": {"yes": 0, "no": 0, "v": 0}}

    def deliver(snapshot):
        for key, s in samples_of(snapshot, "hits_total").items():
            delivered["counter"][key] = delivered["counter"].get(key, 0) + s.value
        for key, s in samples_of(snapshot, "sizes").items():
            total = delivered["hist"].get(key, (0, 0, 0))
            delivered["hist"][key] = tuple(a + b for a, b in zip(total, s.counts))
        for t in snapshot.toggles.values():
            delivered["flags"]["yes"] += t.yes
            delivered["flags"]["no"] += t.no
            delivered["flags"]["v"] += sum(t.variants.values())

    def collector():
        rng = random.Random(7)
        while not stop.is_set():
            snapshot = agent.collect()
            if rng.random() < 0.5:
                agent.restore(snapshot)  # a failed send
            else:
                deliver(snapshot)

    def recorder(worker):
        child = counter.labels(worker=str(worker))
        for i in range(ROUNDS):
            child.inc()
            counter.labels(str(worker)).inc(2)
            histogram.labels(worker=str(worker)).observe(i % 20)
            gauge.set(i)
            agent.record_flag("race", i % 3 != 0, "v" if i % 2 else None)

    collecting = threading.Thread(target=collector)
    collecting.start()
    recorders = [threading.Thread(target=recorder, args=(w,)) for w in range(THREADS)]
    for t in recorders:
        t.start()
    for t in recorders:
        t.join(120)
    stop.set()
    collecting.join(30)
    deliver(agent.collect())  # the final, successful send

    assert delivered["counter"] == {(str(w),): 3 * ROUNDS for w in range(THREADS)}
    per_worker = (ROUNDS // 20 * 2, ROUNDS // 20 * 9, ROUNDS // 20 * 9)  # <=1, <=10, +Inf
    assert delivered["hist"] == {(str(w),): per_worker for w in range(THREADS)}
    yes = sum(1 for i in range(ROUNDS) if i % 3 != 0) * THREADS
    assert delivered["flags"] == {"yes": yes, "no": ROUNDS * THREADS - yes,
                                  "v": ROUNDS // 2 * THREADS}
    assert agent.statistics()["recorded"]["counter_increments"] == 3 * ROUNDS * THREADS


def test_new_series_created_during_collect_are_not_missed(agent):
    counter = agent.counter("users_total", "Users", labels=("user",))
    stop = threading.Event()
    delivered = {}

    def collector():
        while not stop.is_set():
            for key, s in samples_of(agent.collect(), "users_total").items():
                delivered[key] = delivered.get(key, 0) + s.value

    thread = threading.Thread(target=collector)
    thread.start()
    for i in range(900):
        counter.labels(f"u{i}").inc()
    stop.set()
    thread.join(30)
    for key, s in samples_of(agent.collect(), "users_total").items():
        delivered[key] = delivered.get(key, 0) + s.value
    assert delivered == {(f"u{i}",): 1 for i in range(900)}


@pytest.mark.parametrize("order", [(1, 1.0, True), (True, 1.0, 1), (1.0, True, 1)])
def test_equal_but_different_label_values_stay_apart_whatever_came_first(agent, order):
    """1, 1.0 and True are equal dict keys; as label values they are "1", "1.0", "True"."""
    family = agent.counter("c", "C", labels=("v",))
    for value in order:
        family.labels(value).inc()
        family.labels(v=value).inc()
    assert {c.label_values: c.value for c in family.series()} == {
        ("1",): 2, ("1.0",): 2, ("True",): 2}


def test_str_enum_label_values_are_their_text(agent):
    import enum

    class Plan(str, enum.Enum):
        PRO = "pro"

    family = agent.counter("c", "C", labels=("plan",))
    family.labels(Plan.PRO).inc()
    family.labels("pro").inc()
    family.labels(plan=Plan.PRO).inc()
    assert [(c.label_values, c.value) for c in family.series()] == [(("pro",), 3)]


def test_concurrent_gauge_increments_are_exact(agent):
    gauge = agent.gauge("in_flight", "In flight")
    gauge.set(0)

    def work():
        for _ in range(20_000):
            gauge.inc()
            gauge.dec()
            gauge.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert gauge.value == 80_000


def test_keyword_labels_of_three_in_any_order_are_one_series_and_wrong_names_are_explained(
        agent):
    family = agent.counter("requests_total", "Requests", labels=("method", "route", "status"))
    child = family.labels(method="GET", route="/cart", status="2xx")
    assert family.labels(status="2xx", method="GET", route="/cart") is child
    assert family.labels("GET", "/cart", "2xx") is child
    assert family.labels(route="/cart", status="2xx", method="GET") is not family.labels(
        route="GET", status="2xx", method="/cart")  # the values follow their names
    with pytest.raises(ValueError, match=r"missing \['status'\], unexpected \['code'\]"):
        family.labels(method="GET", route="/cart", code="2xx")
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        family.labels(method="GET", route="/cart", status="2xx", extra="x")
    with pytest.raises(ValueError, match=r"missing \['status'\]"):
        family.labels(method="GET", route="/cart")
    with pytest.raises(TypeError, match="needs a string value"):
        family.labels(method="GET", route=["/cart"], status="2xx")
    with pytest.raises(TypeError, match="not both"):
        family.labels("GET", route="/cart", status="2xx")
    assert [c.label_values for c in family.series()] == [("GET", "/cart", "2xx"),
                                                         ("/cart", "GET", "2xx")]


def test_a_histograms_sum_since_start_holds_through_collects_restores_and_drops(agent):
    latency = agent.histogram("latency_seconds", "Latency", buckets=(1.0,))
    latency.observe(0.5)
    failed = agent.collect()
    latency.observe(2.0)
    assert latency.sum == 2.5  # one window taken, one open
    agent.restore(failed)
    assert latency.sum == 2.5  # given back: counted once, not twice
    agent.collect()
    assert (latency.sum, latency.count) == (2.5, 2)
    big = 2.0**52
    latency.observe(big)
    failed = agent.collect()
    latency.observe(big)
    agent.restore(failed)  # the two windows no longer fit one sum: the older is dropped
    assert agent.statistics()["dropped"].get("unsafe_sum") == 1
    assert (latency.sum, latency.count) == (2.5 + 2 * big, 4)  # still observed, since start


def test_a_counter_series_is_no_iterable_whatever_it_is_made_of(agent):
    series = agent.counter("jobs_total", "Jobs", labels=("queue",)).labels("mail")
    series.inc()
    with pytest.raises(TypeError, match=r"not iterable; read \.value"):
        list(series)  # would never end if the series iterated as the count it is built on
    with pytest.raises(TypeError, match="not iterable"):
        for _ in series:
            pass
    assert series.value == 1  # reading is exact however often it is read
    assert series.value == 1
