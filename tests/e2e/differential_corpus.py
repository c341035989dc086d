"""The differential test's corpus: every body it sends to both the real server and the
receiver, each with a name saying where it comes from.

Sources:

- ``agent/...``: bodies impactagent itself builds (``build_payloads``) from recorded agents:
  flags with variants, every metric kind, labels, and a window split into several bodies;
- ``rules/...``: the named regression cases of ``tests.server_rules``;
- ``generated/...``: files under ``tests/data/corpus/generated/``, drawn once from
  strategies that follow the seed schema and then mutated (nulls, missing fields, wrong
  types, huge, negative and fractional numbers, bools, bad ``le``, unknown types, ``labels:
  null``, unicode names, oversize bodies). They are files so that every run sends the same
  bodies; ``python -m tests.e2e.differential_corpus`` draws them again (a fixed seed);
- every other ``*.json`` under ``tests/data/corpus/`` (the official SDKs' captured bodies):
  a file holding an object is one body, sent as its exact bytes; a list holds several.
"""

from __future__ import annotations

import copy
import json
import random
import string
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import impactagent
from tests.server_rules import CASES, RAW_CASES

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
GENERATED = CORPUS / "generated"
#: Flags the test creates on the server; ``diff-unknown`` is never created.
FLAGS = ("diff-a", "diff-b", "diff-c")
UNKNOWN_FLAG = "diff-unknown"
SEED = 20261127
LIMIT = 100 * 1024

Body = Tuple[str, bytes]


def corpus() -> List[Body]:
    """Every body, named, in the order the test sends them."""
    bodies = list(agent_bodies())
    bodies += [(f"rules/{name}", json.dumps(case.body).encode())
               for name, case in sorted(CASES.items())]
    bodies += [(f"rules/{name}", raw) for name, (raw, _status) in sorted(RAW_CASES.items())]
    for path in sorted(CORPUS.rglob("*.json")):
        name = str(path.relative_to(CORPUS))
        raw = path.read_bytes()
        try:
            document = json.loads(raw)
        except ValueError:
            bodies.append((name, raw))
            continue
        if isinstance(document, list) and path.parent != GENERATED:
            bodies += [(f"{name}[{i}]", json.dumps(item).encode())
                       for i, item in enumerate(document) if isinstance(item, dict)]
        else:
            bodies.append((name, raw))
    return bodies


# -- impactagent's own bodies ------------------------------------------------------------------

def agent_bodies() -> Iterator[Body]:
    """Bodies built by impactagent from recorded agents (no network: built, not sent)."""
    token = "default:development.unused"
    shop = impactagent.Agent("diff-agent-shop", url="http://127.0.0.1:9/api", api_key=token)
    for i in range(30):
        shop.record_flag(FLAGS[0], i % 3 != 0)
        shop.record_flag(FLAGS[1], i % 2 == 0, variant="blue" if i % 4 else "green")
    shop.counter("diff_agent_orders_total", "Orders", labels=("route",)).labels(
        route="/cart").inc(3)
    shop.gauge("diff_agent_queue_depth", "Queue depth").set(12.5)
    seconds = shop.histogram("diff_agent_latency_seconds", "Latency")
    for value in (0.003, 0.02, 0.2, 0.7, 3.0, 42.0):
        seconds.observe(value)
    shop.histogram("diff_agent_size_bytes", "Size", buckets=(10, 100, 1000)).observe(55)
    for i, payload in enumerate(shop.build_payloads(shop.collect())):
        yield f"agent/shop-{i}", payload.body

    # One window with many series, split into several bodies by a small body limit.
    split = impactagent.Agent("diff-agent-split", url="http://127.0.0.1:9/api", api_key=token,
                              max_payload_bytes=4000)
    users = split.counter("diff_agent_logins_total", "Logins", labels=("user",))
    for i in range(120):
        users.labels(user=f"user-{i:03d}").inc(i % 5 + 1)
    split.record_flag(FLAGS[2], True)
    for i, payload in enumerate(split.build_payloads(split.collect())):
        yield f"agent/split-{i}", payload.body

    # An idle window: what the agent sends when nothing was recorded.
    idle = impactagent.Agent("diff-agent-idle", url="http://127.0.0.1:9/api", api_key=token)
    idle.counter("diff_agent_idle_total", "Never incremented")
    for i, payload in enumerate(idle.build_payloads(idle.collect())):
        yield f"agent/idle-{i}", payload.body
    for agent in (shop, split, idle):
        agent.close(timeout=0)


# -- generated bodies --------------------------------------------------------------------------

_NAME_TAIL = st.text(string.ascii_lowercase + string.digits + "_", min_size=1, max_size=6)
_LABEL_NAMES = st.sampled_from(["route", "region", "status", "new-checkout", "kind"])
_LABEL_VALUES = st.one_of(st.sampled_from(["a", "b", "/cart", "eu", "200"]),
                          st.integers(0, 500))


@st.composite
def _labels(draw: Any, app: str) -> Dict[str, Any]:
    labels: Dict[str, Any] = {"appName": app, "environment": "development"}
    labels.update(draw(st.dictionaries(_LABEL_NAMES, _LABEL_VALUES, max_size=2)))
    return labels


@st.composite
def _metric(draw: Any, app: str) -> Dict[str, Any]:
    kind = draw(st.sampled_from(["counter", "gauge", "histogram"]))
    name = f"dg_{kind[0]}_{draw(_NAME_TAIL)}"  # one name, one type: clashes come from mutation
    samples = []
    for _ in range(draw(st.integers(0, 3))):
        labels = draw(_labels(app))
        if kind == "counter":
            samples.append({"labels": labels, "value": draw(st.integers(0, 10_000))})
        elif kind == "gauge":
            samples.append({"labels": labels, "value": draw(st.floats(-1e6, 1e6, width=32))})
        else:
            bounds = [0.1, 1.0, 10.0]
            counts = sorted(draw(st.lists(st.integers(0, 50), min_size=4, max_size=4)))
            samples.append({"labels": labels, "count": counts[-1],
                            "sum": draw(st.floats(0, 1e4, width=32)),
                            "buckets": [{"le": le, "count": n} for le, n in
                                        zip([*bounds, "+Inf"], counts)]})
    return {"name": name, "help": draw(st.sampled_from(["Help", "Some metric"])),
            "type": kind, "samples": samples}


@st.composite
def _body(draw: Any) -> Dict[str, Any]:
    app = f"dg-app-{draw(st.integers(0, 9))}"
    body: Dict[str, Any] = {"appName": app, "instanceId": "gen", "environment": "development",
                            "sdkVersion": "generated:1.0.0"}
    if draw(st.booleans()):
        toggles = {}
        for flag in draw(st.lists(st.sampled_from([*FLAGS, UNKNOWN_FLAG]), max_size=3,
                                  unique=True)):
            toggles[flag] = {"yes": draw(st.integers(0, 100)), "no": draw(st.integers(0, 100)),
                             "variants": draw(st.dictionaries(st.sampled_from(["x", "y"]),
                                                              st.integers(0, 20), max_size=2))}
        body["bucket"] = {"start": "2026-11-27T08:00:00.000Z", "stop": "2026-11-27T08:00:10Z",
                          "toggles": toggles}
    body["impactMetrics"] = draw(st.lists(_metric(app), max_size=3))
    return body


def _slots(node: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Tuple[Any, ...], Any]]:
    """Every (path, value) in a document, containers included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), value
            yield from _slots(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index), value
            yield from _slots(value, (*path, index))


def _set(document: Any, path: Tuple[Any, ...], value: Any, delete: bool = False) -> None:
    for key in path[:-1]:
        document = document[key]
    if delete:
        del document[path[-1]]
    else:
        document[path[-1]] = value


def _pick(rng: random.Random, document: Any, want: Callable[[Tuple[Any, ...], Any], bool]
          ) -> Any:
    found = [slot for slot in _slots(document) if want(*slot)]
    return rng.choice(found) if found else None


def mutations_by_name() -> Dict[str, Callable[[random.Random, Dict[str, Any]], bool]]:
    def leaf(path: Tuple[Any, ...], value: Any) -> bool:
        return not isinstance(value, (dict, list))

    def replace(want: Callable[..., bool], values: List[Any]) -> Callable[..., bool]:
        def mutate(rng: random.Random, document: Dict[str, Any]) -> bool:
            slot = _pick(rng, document, want)
            if slot is None:
                return False
            _set(document, slot[0], rng.choice(values))
            return True
        return mutate

    def number(path: Tuple[Any, ...], value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def named(*keys: str) -> Callable[..., bool]:
        return lambda path, value: isinstance(path[-1], str) and path[-1] in keys

    def missing(rng: random.Random, document: Dict[str, Any]) -> bool:
        slot = _pick(rng, document, lambda path, value: isinstance(path[-1], str))
        if slot is None:
            return False
        _set(document, slot[0], None, delete=True)
        return True

    def oversize(rng: random.Random, document: Dict[str, Any]) -> bool:
        # Multi-byte characters: the limit counts bytes, not characters.
        size = len(json.dumps(document, ensure_ascii=False).encode())
        target = rng.choice([LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 5000, 162_000])
        pad = target - size - len(', "pad": ""')
        if pad < 0:
            return False
        document["pad"] = "é" * (pad // 2) + "x" * (pad % 2)
        return True

    def clash(rng: random.Random, document: Dict[str, Any]) -> bool:
        metrics = document.get("impactMetrics") or []
        if not metrics:
            return False
        twin = copy.deepcopy(rng.choice(metrics))
        twin["type"] = {"counter": "gauge", "gauge": "histogram", "histogram": "counter"}[
            twin["type"]]
        metrics.append(twin)
        return True

    return {
        "null": replace(leaf, [None]),
        "null_container": replace(lambda p, v: isinstance(v, (dict, list)), [None]),
        "missing": missing,
        "wrong_type": replace(leaf, ["", "text", [], {}, True, 7]),
        "huge": replace(number, [2**53, 2**53 - 1, 2**64, 1e300, 1e16]),
        "negative": replace(number, [-1, -0.5, -(2**53)]),
        "fractional": replace(number, [0.5, 1.5, 2.5, 1e-7]),
        "bool": replace(number, [True, False]),
        "numeric_string": replace(number, ["5", "1e3", " 7 ", "0x10", "1.50"]),
        "bad_le": replace(named("le"), ["abc", None, "Infinity", "+inf", -1, "0.5", 1e300]),
        "unknown_type": replace(named("type"), ["summary", "Counter", "", "histogram "]),
        "labels_null": replace(named("labels"), [None, [], "x"]),
        "label_value": replace(lambda p, v: len(p) > 1 and p[-2] == "labels",
                               ["", None, True, 1.5, 2**60, "ünï", "line\nbreak"]),
        "unicode_name": replace(named("name"), ["dg_é", "dg-dash", "1dg", "😀dg", "", "dg.x",
                                                "dg_ok"]),
        "app_name": replace(named("appName"), ["", None, 5, True, "ü-app", "dg-app-x"]),
        "date": replace(named("start", "stop"), ["today", 5.5, 1700000000000, None,
                                                 "2026-11-27 08:00:00Z", "2026-13-01T00:00:00Z",
                                                 "2026-11-27T08:00:00"]),
        "type_clash": clash,
        "oversize": oversize,
    }


def generate(count: int = 150) -> List[Tuple[str, Dict[str, Any]]]:
    """Draw ``count`` clean bodies (derandomised: the same every time), keep one in four as
    is and mutate every one; ``(name, body)`` pairs."""
    drawn: List[Dict[str, Any]] = []

    @settings(derandomize=True, max_examples=count, database=None, phases=[Phase.generate],
              deadline=None)
    @given(_body())
    def draw(body: Dict[str, Any]) -> None:
        drawn.append(body)

    draw()
    rng = random.Random(SEED)
    mutations = mutations_by_name()
    bodies = []
    for index, body in enumerate(drawn):
        if index % 4 == 0:
            bodies.append((f"{index:03d}-clean", body))
        names = sorted(mutations)
        for _ in range(5):  # a mutation may not apply to this body: try another
            name = rng.choice(names)
            mutated = copy.deepcopy(body)
            if mutations[name](rng, mutated):
                bodies.append((f"{index:03d}-{name}", mutated))
                break
    return bodies


def write(directory: Path = GENERATED) -> int:
    """Replace the generated corpus files; the number written."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.json"):
        old.unlink()
    bodies = generate()
    for name, body in bodies:
        (directory / f"{name}.json").write_bytes(json.dumps(body, ensure_ascii=False).encode())
    return len(bodies)


if __name__ == "__main__":
    print(f"{write()} bodies written to {GENERATED}")
