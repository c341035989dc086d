"""Flag decorators, timers and exception counters in sync and async code, and metrics
labelled by the state of a flag in the current request or task."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from types import SimpleNamespace

import pytest

import impactagent
from impactagent.core.flag_context import flag_scope, flag_states


@pytest.fixture
def agent():
    with flag_scope():  # each test starts with no flags seen in its context
        yield impactagent.Agent("shop", "production")


def toggles(agent):
    return {name: (t.yes, t.no, t.variants) for name, t in agent.collect().toggles.items()}


# -- @agent.flag ----------------------------------------------------------------------------


def test_flag_decorator_counts_what_each_kind_of_result_says(agent):
    results = iter([True, False, None, 1, "blue", "disabled",
                    {"name": "green", "enabled": True, "feature_enabled": True},
                    {"name": "disabled", "enabled": False, "feature_enabled": True},
                    SimpleNamespace(name="red", enabled=True)])

    @agent.flag("new-checkout")
    def decide():
        return next(results)

    returned = [decide() for _ in range(9)]
    assert returned[4] == "blue" and returned[0] is True  # results pass through unchanged
    assert toggles(agent) == {"new-checkout": (
        6, 3, {"blue": 1, "disabled": 2, "green": 1, "red": 1})}


def test_flag_decorator_keeps_signature_and_metadata(agent):
    def decide(user: str, *, beta: bool = False) -> bool:
        """Is the new checkout on for this user?"""
        return beta

    wrapped = agent.flag("new-checkout")(decide)
    assert wrapped.__name__ == "decide" and wrapped.__doc__ == decide.__doc__
    assert inspect.signature(wrapped) == inspect.signature(decide)
    assert wrapped.__wrapped__ is decide


def test_flag_decorator_on_async_functions(agent):
    @agent.flag("search-ranking")
    async def decide(n):
        await asyncio.sleep(0)
        return "v2" if n % 2 else False

    assert inspect.iscoroutinefunction(decide)

    async def main():
        return await asyncio.gather(*(decide(n) for n in range(5)))

    assert asyncio.run(main()) == [False, "v2", False, "v2", False]
    assert toggles(agent) == {"search-ranking": (2, 3, {"v2": 2})}


def test_a_flag_function_that_raises_counts_neither_yes_nor_no(agent):
    @agent.flag("new-checkout")
    def decide():
        raise RuntimeError("flag service down")

    @agent.flag("new-checkout")
    async def decide_async():
        raise RuntimeError("flag service down")

    with pytest.raises(RuntimeError):
        decide()
    with pytest.raises(RuntimeError):
        asyncio.run(decide_async())
    assert toggles(agent) == {}
    assert "new-checkout" not in flag_states()


def test_flag_decorator_refuses_bad_use(agent):
    with pytest.raises(TypeError, match="non-empty flag name"):
        agent.flag("")
    with pytest.raises(TypeError, match="decorates a function"):
        agent.flag("x")(42)


# -- timers and exception counters, sync and async ------------------------------------------


def test_histogram_time_and_counter_count_exceptions_on_async_functions(agent):
    latency = agent.histogram("work_seconds", "Work", buckets=(0.5, 1.0))
    failures = agent.counter("work_failures_total", "Failures")

    @latency.time()
    @failures.count_exceptions(ValueError)
    async def work(fail):
        await asyncio.sleep(0)
        if fail:
            raise ValueError("bad")
        return "done"

    assert asyncio.run(work(False)) == "done"
    with pytest.raises(ValueError):
        asyncio.run(work(True))
    # Not a ValueError: timed, but not counted.
    with pytest.raises(KeyError), latency.time(), failures.count_exceptions(ValueError):
        raise KeyError("x")
    assert latency.count == 3 and failures.value == 1


# -- metrics labelled by flags ----------------------------------------------------------------


def test_a_metric_labelled_by_a_flag_takes_its_state_from_the_current_context(agent):
    checkouts = agent.counter("checkout_total", "Checkouts", labels=("route",),
                              flags=("new-checkout",))
    assert checkouts.label_names == ("route", "new_checkout")

    @agent.flag("new-checkout")
    def new_checkout(user):
        return {"name": "blue", "enabled": True} if user == "ann" else False

    for user in ("ann", "bob", "ann"):
        with flag_scope():
            new_checkout(user)
            checkouts.labels(route="/cart").inc()
    with flag_scope():
        checkouts.labels("/cart").inc()  # the flag was not evaluated in this request
    with flag_scope():
        agent.record_flag("new-checkout", True)  # a plain record_flag is seen too
        checkouts.labels("/cart").inc(5)

    snapshot = agent.collect()
    [checkout_total] = snapshot.metrics
    assert {s.child.label_values: s.value for s in checkout_total.samples} == {
        ("/cart", "blue"): 2, ("/cart", "disabled"): 1, ("/cart", "not_evaluated"): 1,
        ("/cart", "enabled"): 5}
    # The evaluations were counted once each, by the decorator and record_flag alone.
    toggle = snapshot.toggles["new-checkout"]
    assert (toggle.yes, toggle.no, toggle.variants) == (3, 1, {"blue": 2})


def test_flag_labels_follow_asyncio_tasks_and_threads_without_leaking(agent):
    served = agent.counter("served_total", "Served", flags=("beta",))
    latency = agent.histogram("served_seconds", "Latency", buckets=(1.0,), flags=("beta",))

    async def request(on):
        with flag_scope(), latency.time():  # the series is chosen when the timer stops
            await asyncio.sleep(0)
            agent.record_flag("beta", on, "v2" if on else None)
            await asyncio.sleep(0)  # the other tasks run here: their states must not leak
            served.inc()

    async def main():
        await asyncio.gather(*(asyncio.create_task(request(i % 3 == 0)) for i in range(9)))

    asyncio.run(main())

    def in_thread(on):
        with flag_scope():
            agent.record_flag("beta", on)
            served.inc()

    threads = [threading.Thread(target=in_thread, args=(i % 2 == 0,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = {d.family.name: {s.child.label_values: s for s in d.samples}
                for d in agent.collect().metrics}
    assert {k: s.value for k, s in snapshot["served_total"].items()} == {
        ("v2",): 3, ("disabled",): 6 + 2, ("enabled",): 2}
    assert {k: s.count for k, s in snapshot["served_seconds"].items()} == {
        ("v2",): 3, ("disabled",): 6}


def test_flag_labels_reach_the_payload_like_any_label(agent):
    gauge = agent.gauge("cart_items", "Items in cart", flags=("new-checkout",))
    with flag_scope():
        agent.record_flag("new-checkout", True, "blue")
        gauge.set(3)
    body = agent.build_payloads(agent.collect())[0].document
    [metric] = body["impactMetrics"]
    assert metric["samples"][0]["labels"] == {
        "appName": "shop", "environment": "production", "new_checkout": "blue"}


def test_flag_labels_are_checked_when_the_metric_is_defined(agent):
    with pytest.raises(TypeError, match=r"write flags=\('beta',\)"):
        agent.counter("a_total", "A", flags="beta")
    with pytest.raises(ValueError, match="repeat a name"):
        agent.counter("b_total", "B", labels=("new_checkout",), flags=("new-checkout",))
    with pytest.raises(TypeError, match="non-empty flag names"):
        agent.counter("c_total", "C", flags=("",))
    agent.counter("d_total", "D", labels=("beta",))
    with pytest.raises(ValueError, match="flags"):
        agent.counter("d_total", "D", flags=("beta",))  # the same labels, but from a flag
    labelled = agent.counter("e_total", "E", labels=("route",), flags=("beta",))
    with pytest.raises(ValueError, match="filled in from the current context"):
        labelled.labels(route="/", beta="on")
    with pytest.raises(ValueError, match="its flags' states are filled in"):
        labelled.labels("/", "on")
    assert agent.counter("lives_total", "F", flags=("9-lives",)).label_names == ("_9_lives",)


def test_a_flag_decided_in_a_worker_thread_is_seen_by_the_request_that_started_it(agent):
    """FastAPI runs sync endpoints in a thread pool with a copy of the request's context:
    what they decide must reach the middleware that records the request."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    served = agent.counter("served_total", "Served", flags=("beta",))
    with flag_scope(), ThreadPoolExecutor(1) as pool:
        context = contextvars.copy_context()
        pool.submit(context.run, agent.record_flag, "beta", True, "v3").result()
        served.inc()
    [delta] = agent.collect().metrics
    assert {s.child.label_values: s.value for s in delta.samples} == {("v3",): 1}


def test_flag_decorator_takes_exactly_the_calls_the_function_takes(agent):
    marker = []

    def decide(a, b=marker, /, c=2, *rest, d, e=None, **extra):
        return (a, b, c, rest, d, e, extra)

    wrapped = agent.flag("new-checkout")(decide)
    calls = [((1,), {"d": 4}), ((1, 2, 3, 5, 6), {"d": 4, "e": 7, "f": 8}),
             ((1,), {"c": 3, "d": 4, "b": 9})]
    for args, kwargs in calls:
        assert wrapped(*args, **kwargs) == decide(*args, **kwargs)
    assert wrapped(1, d=4)[1] is marker  # the function's own default object
    for args, kwargs in [((), {"d": 4}), ((1,), {}), ((1, 2, 3), {"c": 1, "d": 4})]:
        with pytest.raises(TypeError) as theirs:
            decide(*args, **kwargs)
        with pytest.raises(TypeError) as ours:
            wrapped(*args, **kwargs)
        assert str(ours.value) == str(theirs.value)
    assert toggles(agent) == {"new-checkout": (4, 0, {})}  # a refused call counts nothing


def test_flag_decorator_on_callables_of_every_shape(agent):
    class Decider:
        def __call__(self, user, /):
            return user == "beta"

        def method(self, user, *, strict=False):
            return "blue" if user == "beta" else strict

    def names_like_the_wrapper(_ia_func, _ia_result=None):
        return _ia_func

    def keyword_after_positional_only(a, /, *, b):
        return a and b

    def claims_other_parameters(*args, **kwargs):
        return args == (1,) and not kwargs  # a claimed default passed on would show here

    claims_other_parameters.__signature__ = inspect.signature(lambda a, b=2: None)

    decider = Decider()
    assert agent.flag("claimed")(claims_other_parameters)(1) is True
    assert agent.flag("call")(decider)("beta") is True
    assert agent.flag("method")(decider.method)(user="beta") == "blue"
    assert agent.flag("builtin")(bool)(0) is False
    assert agent.flag("clash")(names_like_the_wrapper)(_ia_func=True) is True
    assert agent.flag("kw")(keyword_after_positional_only)(1, b=True) is True
    assert toggles(agent) == {"claimed": (1, 0, {}), "call": (1, 0, {}),
                              "method": (1, 0, {"blue": 1}),
                              "builtin": (0, 1, {}), "clash": (1, 0, {}), "kw": (1, 0, {})}


def test_a_decorated_flag_notes_its_state_where_a_metric_is_labelled_by_it(agent):
    @agent.flag("new-checkout")
    def decide(variant):
        return variant

    def main():
        decide("blue")
        before = flag_states()
        checkouts = agent.counter("checkout_total", "Checkouts", flags=("new-checkout",))
        decide("green")
        checkouts.inc()
        return before, flag_states(), {c.label_values: c.value for c in checkouts.series()}

    before, after, series = contextvars.copy_context().run(main)
    assert before == {}  # as record_flag: nothing labelled by the flag yet, nothing noted
    assert after == {"new-checkout": "green"}
    assert series == {("green",): 1}


def test_flag_decorator_on_methods_in_a_class_body_and_on_partials(agent):
    class Flags:
        @agent.flag("by-method")
        def beta(self, user, *, strict=False):
            return user.startswith("beta-") and not strict

    def decide(threshold, user):
        return "blue" if user > threshold else False

    flags = Flags()
    assert (flags.beta("beta-ann"), flags.beta("bob"), flags.beta(user="beta-x", strict=True)) \
        == (True, False, False)
    assert agent.flag("by-partial")(functools.partial(decide, 5))(user=9) == "blue"
    assert toggles(agent) == {"by-method": (1, 2, {}), "by-partial": (1, 0, {"blue": 1})}


@pytest.mark.parametrize("wrong", ["ValueError", ValueError("x"), (ValueError, "KeyError"), int])
def test_count_exceptions_refuses_what_is_not_an_exception_class_when_defined(wrong):
    """A mistake is told where it is written, not when an exception passes through later."""
    agent = impactagent.Agent("shop")
    errors = agent.counter("errors_total", "Errors")
    with pytest.raises(TypeError, match="exception class or a tuple"):
        errors.count_exceptions(wrong)
    with pytest.raises(TypeError, match="exception class or a tuple"):
        agent.counter("failures_total", "Failures", labels=["route"]).labels(
            route="/a").count_exceptions(wrong)
