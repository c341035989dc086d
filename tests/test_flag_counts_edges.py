"""Edges of the one-count-per-evaluation flag counts and the refusal of empty label values,
through the public API, real threads and a child
interpreter told it is free-threaded.

The promises each test holds the agent to: every evaluation is counted exactly once, in a
window that carries its variant with its yes or no; a call that is refused is refused
whatever was recorded before it (and whether or not the flag limit was reached), and
counts nothing; no label value that Unleash refuses is ever sent.
"""

from __future__ import annotations

import json
from collections import UserString
from enum import Enum
from typing import Any, Dict, List

import pytest

import impactagent
from impactagent.core.flag_context import flag_scope, flag_states

from . import child


class Shade(str, Enum):
    """A variant name an app may keep in an Enum (the Unleash SDK hands back plain str)."""

    BLUE = "blue"


class Flag(str, Enum):
    NEW_CHECKOUT = "new-checkout"


# -- refusals do not depend on the flag limit or on what was recorded before -------------


@pytest.mark.parametrize("variant", [["blue"], {"name": "blue"}, 5, b"blue"])
def test_a_variant_that_is_no_name_is_refused_past_the_flag_limit_too(variant: Any):
    # Under the limit a list (or any non-str) variant raises TypeError at record_flag, where
    # the mistake is. Past it the call returned quietly and noted the list itself as the
    # flag's state: a metric labelled by the flag then raised later, in the middleware that
    # records the request, far from the mistake (or sent "5" as the state of variant 5).
    agent = impactagent.Agent("shop", max_flags=1)
    agent.counter("orders_total", "Orders", flags=("late-flag",))
    agent.record_flag("first", True)
    with flag_scope():
        with pytest.raises(TypeError, match="variant must be a variant name"):
            agent.record_flag("late-flag", True, variant)
        with pytest.raises(TypeError, match="variant must be a variant name"):
            agent.count_evaluation("late-flag", True, variant)
        assert flag_states() == {}  # nothing noted for a refused call
    # A refused call counts nothing, not even a flag_limit drop.
    assert agent.statistics()["dropped"] == {}
    # The same call under the limit: the same error.
    fresh = impactagent.Agent("shop")
    with pytest.raises(TypeError, match="variant must be a variant name"):
        fresh.record_flag("late-flag", True, variant)


def test_a_str_enum_flag_name_and_variant_count_whatever_came_first():
    # A str Enum member is a str (label values take its text). Before: the first
    # evaluation of a flag named by one raised TypeError, yet the same call counted once a
    # plain str of that name had been recorded: whether a call raised depended on history.
    agent = impactagent.Agent("shop")
    agent.record_flag(Flag.NEW_CHECKOUT, True, Shade.BLUE)
    agent.record_flag("new-checkout", False, "blue")
    agent.record_flag(Flag.NEW_CHECKOUT, True, Shade.BLUE)
    toggles = agent.collect().toggles
    assert toggles == {"new-checkout": impactagent.core.flags.ToggleDelta(2, 1, {"blue": 3})}
    # The names in the body are the plain text, as the server stores them.
    assert [type(name) for name in toggles] == [str]
    assert [type(v) for v in toggles["new-checkout"].variants] == [str]


def test_an_empty_str_enum_flag_name_is_refused():
    class Empty(str, Enum):
        NONE = ""

    agent = impactagent.Agent("shop")
    with pytest.raises(TypeError, match="non-empty str"):
        agent.record_flag(Empty.NONE, True)
    assert agent.collect().toggles == {}


# -- empty label values --------------------------------------------------------------------


def test_a_label_value_whose_text_is_empty_is_refused_like_the_empty_string():
    # Not a str, so label_value took str(value) as it came: "" went into the body, and
    # Unleash discards every impact metric of a body with an empty label value.
    agent = impactagent.Agent("shop")
    jobs = agent.counter("jobs_total", "Jobs", labels=("queue",))
    for value in (UserString(""), type("Blank", (), {"__str__": lambda self: ""})()):
        with pytest.raises(ValueError, match="non-empty value"):
            jobs.labels(value)
        with pytest.raises(ValueError, match="non-empty value"):
            jobs.labels(queue=value)
        with pytest.raises(ValueError, match="non-empty value"):
            agent.increment_counter("jobs_total", labels={"queue": value})
    assert jobs.series() == []
    jobs.labels(UserString("mail")).inc()
    assert [s.label_values for s in jobs.series()] == [("mail",)]


# -- what held -----------------------------------------------------------------------------


_HAMMER = """
    import json, sys, threading
    {preamble}
    import impactagent
    from impactagent.core import _gil
    agent = impactagent.Agent("flags", max_flags=3)
    THREADS, N = 4, {n}
    go = threading.Event()
    def work(index):
        go.wait()
        for i in range(N):
            state = (i + index) % 3 != 0
            # New variant names race each other in both states (each thread makes its own
            # and meets the others'), plain yes/no in between, and a flag past the limit.
            agent.record_flag("f", state, "v%d" % ((i * 7 + index) % 50) if i % 4 else None)
            agent.record_flag("g", not state, "w%d" % (i % 3))
            if i % 97 == 0:
                agent.record_flag("over-%d" % index, True, "x")
                try:
                    agent.record_flag("f", state, ["unhashable"])
                except TypeError:
                    pass
    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    sys.setswitchinterval(1e-6)
    windows, collects, bad, cumulative = [], 0, [], []
    go.set()
    while any(thread.is_alive() for thread in threads) or collects < 3:
        snapshot = agent.collect()
        collects += 1
        for name, delta in snapshot.toggles.items():
            if sum(delta.variants.values()) > delta.yes + delta.no:
                bad.append([name, delta.yes, delta.no, delta.variants])
        if collects % 3 == 0:
            agent.restore(snapshot)
        else:
            windows.append({{n: [d.yes, d.no, d.variants] for n, d in snapshot.toggles.items()}})
        total = sum(d.yes + d.no for d in agent.recorder.flags.cumulative().values())
        cumulative.append(total)
    for thread in threads:
        thread.join()
    last = agent.collect()
    windows.append({{n: [d.yes, d.no, d.variants] for n, d in last.toggles.items()}})
    stats = agent.statistics()
    print(json.dumps({{"atomic": _gil.ATOMIC_C_CALLS, "windows": windows, "bad": bad,
                      "monotonic": cumulative == sorted(cumulative), "stats": stats}},
                     default=str))
"""


def _sums(windows: List[Dict[str, Any]]) -> Dict[str, Any]:
    sums: Dict[str, Any] = {}
    for window in windows:
        for name, (yes, no, variants) in window.items():
            entry = sums.setdefault(name, {"yes": 0, "no": 0, "variants": {}})
            entry["yes"] += yes
            entry["no"] += no
            for variant, n in variants.items():
                entry["variants"][variant] = entry["variants"].get(variant, 0) + n
    return sums


def _expected(threads: int, n: int) -> Dict[str, Any]:
    expected: Dict[str, Any] = {"f": {"yes": 0, "no": 0, "variants": {}},
                                "g": {"yes": 0, "no": 0, "variants": {}}}
    for index in range(threads):
        for i in range(n):
            state = (i + index) % 3 != 0
            f = expected["f"]
            f["yes" if state else "no"] += 1
            if i % 4:
                v = f"v{(i * 7 + index) % 50}"
                f["variants"][v] = f["variants"].get(v, 0) + 1
            g = expected["g"]
            g["no" if state else "yes"] += 1
            w = f"w{i % 3}"
            g["variants"][w] = g["variants"].get(w, 0) + 1
    return expected


@pytest.mark.parametrize("free_threaded", [False, True], ids=["gil", "free-threaded"])
def test_flag_counts_stay_exact_and_whole_under_racing_names_limit_and_restores(
        free_threaded: bool):
    # Held: every window carries each variant with its yes/no, totals are exact through
    # restores, new variant names racing in both states, refused variants and the flag
    # limit; cumulative() never goes back; nothing is left pending. On the GIL path and
    # on the locked path a free-threaded build takes (forced as ATOMIC_C_CALLS is chosen).
    preamble = ("import sysconfig\n    real = sysconfig.get_config_var\n"
                "    sysconfig.get_config_var = "
                "lambda name: 1 if name == 'Py_GIL_DISABLED' else real(name)"
                if free_threaded else "")
    n = 20000
    result = child.run(_HAMMER.format(preamble=preamble, n=n), timeout=240)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["atomic"] is (not free_threaded)
    assert seen["bad"] == []
    assert sum(1 for window in seen["windows"] if window) > 1  # collects raced recorders
    assert seen["monotonic"]
    sums = _sums(seen["windows"])
    over = {name: sums.pop(name) for name in list(sums) if name.startswith("over-")}
    assert sums == _expected(4, n)
    # The limit (3 flags) let one or more of the racing "over-N" flags in; the rest of
    # their evaluations are counted as dropped, none is lost.
    counted_over = sum(entry["yes"] for entry in over.values())
    per_thread = len(range(0, n, 97))
    assert counted_over + seen["stats"]["dropped"].get("flag_limit", 0) == 4 * per_thread
    assert seen["stats"]["pending_events"] == 0


def test_a_forked_child_counts_its_own_evaluations_only():
    result = child.run("""
        import json, os, threading
        import impactagent
        agent = impactagent.Agent("flags")
        stop = threading.Event()
        def work():
            i = 0
            while not stop.is_set():
                agent.record_flag("f", i % 2 == 0, "blue" if i % 3 else None)
                i += 1
        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        read, write = os.pipe()
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
        if pid == 0:
            for i in range(10):
                agent.record_flag("f", True, "red" if i % 2 else None)
            snapshot = agent.collect()
            toggles = {n: [d.yes, d.no, d.variants] for n, d in snapshot.toggles.items()}
            os.write(write, json.dumps({"toggles": toggles,
                                        "pending": agent.statistics()["pending_events"],
                                        "cumulative": {n: list(d[:2]) for n, d in
                                            agent.recorder.flags.cumulative().items()}
                                        }).encode())
            os._exit(0)
        os.close(write)
        data = b""
        while True:
            chunk = os.read(read, 65536)
            if not chunk:
                break
            data += chunk
        os.waitpid(pid, 0)
        stop.set()
        for thread in threads:
            thread.join()
        print(data.decode())
    """, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["toggles"] == {"f": [10, 0, {"red": 5}]}
    assert seen["pending"] == 0
    assert seen["cumulative"] == {"f": [10, 0]}
