"""Definition-time rules: names, labels, help texts, buckets, and conflicting definitions."""

import pytest

import impactagent


@pytest.fixture
def agent():
    return impactagent.Agent(app_name="shop", environment="production")


@pytest.mark.parametrize("name", ["", "1abc", "checkout-total", "a b", "ünïcode", "a.b"])
def test_invalid_metric_names_are_refused_with_the_rule(agent, name):
    with pytest.raises(ValueError, match=r"\[a-zA-Z_\]\[a-zA-Z0-9_\]\*"):
        agent.counter(name, "help")


@pytest.mark.parametrize("name", ["a", "_x", "checkout_total", "A1_b2"])
def test_valid_metric_names_are_accepted(agent, name):
    assert agent.counter(name, "help").name == name


def test_non_string_name_is_a_type_error(agent):
    with pytest.raises(TypeError, match="metric name must be a str"):
        agent.counter(42, "help")


@pytest.mark.parametrize("help_text", ["", "   "])
def test_empty_help_is_refused(agent, help_text):
    with pytest.raises(ValueError, match="help text of 'jobs' is empty"):
        agent.counter("jobs", help_text)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (("bad-name",), "invalid label name 'bad-name'"),
        (("__meta",), "invalid label name '__meta'"),
        (("appName",), "reserved"),
        (("environment",), "reserved"),
        (("route", "route"), "repeat a name"),
    ],
)
def test_invalid_label_names_are_refused(agent, labels, message):
    with pytest.raises(ValueError, match=message):
        agent.counter("jobs", "Jobs", labels=labels)


def test_a_string_as_labels_is_caught(agent):
    with pytest.raises(TypeError, match=r"write labels=\('route',\)"):
        agent.counter("jobs", "Jobs", labels="route")


def test_le_is_reserved_on_histograms_only(agent):
    agent.counter("c", "h", labels=("le",))
    with pytest.raises(ValueError, match="reserved"):
        agent.histogram("h", "h", labels=("le",))


@pytest.mark.parametrize(
    ("buckets", "error"),
    [
        ((), ValueError),
        ((1, 1), ValueError),
        ((2, 1), ValueError),
        ((float("nan"),), ValueError),
        (("a",), TypeError),
    ],
)
def test_bad_buckets_are_refused(agent, buckets, error):
    with pytest.raises(error):
        agent.histogram("h", "help", buckets=buckets)


def test_a_trailing_infinity_bucket_is_implied(agent):
    histogram = agent.histogram("h", "help", buckets=(0.1, 1, float("inf")))
    assert histogram.buckets == (0.1, 1.0)


def test_same_definition_returns_the_same_object(agent):
    first = agent.counter("jobs", "Jobs", labels=("queue",))
    assert agent.counter("jobs", "Jobs", labels=["queue"]) is first
    h = agent.histogram("lat", "Latency", buckets=(1, 2))
    assert agent.histogram("lat", "Latency", buckets=(1.0, 2.0)) is h


@pytest.mark.parametrize(
    ("redefine", "difference"),
    [
        (lambda a: a.gauge("jobs", "Jobs", labels=("queue",)), "type counter, not gauge"),
        (lambda a: a.counter("jobs", "Other", labels=("queue",)), "help 'Jobs', not 'Other'"),
        (lambda a: a.counter("jobs", "Jobs", labels=("q",)), "labels ('queue',), not ('q',)"),
    ],
)
def test_conflicting_definition_says_what_differs(agent, redefine, difference):
    agent.counter("jobs", "Jobs", labels=("queue",))
    with pytest.raises(ValueError, match=f"already defined differently: {difference}".replace(
            "(", r"\(").replace(")", r"\)")):
        redefine(agent)


def test_conflicting_buckets_say_what_differs(agent):
    agent.histogram("lat", "Latency", buckets=(1, 2))
    with pytest.raises(ValueError, match=r"buckets \(1.0, 2.0\), not \(1.0, 3.0\)"):
        agent.histogram("lat", "Latency", buckets=(1, 3))


def test_concurrent_definitions_return_one_object(agent):
    import threading

    results, barrier = [], threading.Barrier(8)

    def define():
        barrier.wait()
        results.append(agent.counter("race_total", "Race", labels=("a",)))

    threads = [threading.Thread(target=define) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8 and all(r is results[0] for r in results)
