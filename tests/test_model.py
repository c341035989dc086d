"""The stateful model test: the agent's promise, checked after every step of drawn histories.

The promise (README, "What it guarantees"): every count an app records is delivered exactly
once or counted as dropped, with a reason. Hypothesis draws histories of an app and its
server: recording from several threads, flushes that the server answers with anything a real
server, proxy or network answers (``tests/model_server.py``), closes and restarts on the same
spool, forked children that record and end in each way a process ends, spool files planted,
corrupted or deleted, and tasks that label metrics by flag states. A model keeps what was
recorded per series (``tests/model_ledger.py``), and after every step, per series::

    delivered (stored by the server) + refused by the server (400; 413 on one item)
        + pending (still in the agent) + on disk (the spool's files)  ==  recorded

where a shortfall must be covered by the agents' drop counters (``statistics()["dropped"]``,
in events) and an excess at the server by ``possibly_duplicated_events`` (the documented
double count: a body stored whose answer never came back). Gauges: the last value set is
what the server holds last, or what is still pending or on disk. Histograms: counts, sums and
buckets. A closed agent holds nothing. A 401 stops sending until a restart. Nothing is sent
to another origin, and no spool file stays claimed between flushes.

What the model expects of each way a forked child ends (``fork_child``):

- ``close``: ``agent.close()`` then ``os._exit(0)``: everything delivered, spooled or counted.
- ``exit``: a plain exit (the atexit hooks run, as ``sys.exit`` runs them): the same.
- ``multiprocessing``: a ``multiprocessing`` (fork) child whose target returns: the same
  (issue 13, item 11b: multiprocessing ends its children with ``os._exit``).
- ``sigterm``: SIGTERM with the default disposition left to the agent: the same, and the
  process still ends by SIGTERM (item 1).
- ``os_exit``: ``os._exit(0)`` without a close: nothing is promised for what the child held
  in memory (only the spool saves data from ``os._exit`` and ``kill -9``), so the model does
  not count it as recorded; it still checks that nothing of the parent's is sent twice.

Profiles (``IMPACTAGENT_MODEL_PROFILE``): ``ci`` (default: bounded, derandomized, no example
database, so a run is reproducible and short) and ``long`` (many more and longer histories,
random; run it after changing delivery, lifecycle or the spool). Every failure the model ever
found is replayed, step by step, by a plain test in ``tests/test_model_regressions.py``.

For exploring while issue-13 items are open, ``IMPACTAGENT_MODEL_EXCLUDE=1,13`` leaves out
the histories that reach those items (never the checks); CI never sets it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import faulthandler
import json
import math
import multiprocessing
import multiprocessing.util
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import pytest
import ulid
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import impactagent
from tests import child
from tests.model_ledger import (
    Tally,
    documents_tally,
    pending_documents,
    read_json,
    show,
    spool_files,
)
from tests.model_server import Drawn, DrawnServer, Seen, start_servers, stop_servers

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the model forks")

APP = "model-app"
OTHER_APP = "other-app"
TOKEN = "default:production.model-s3cret-token"
BOUNDS = (0.1, 1.0, 10.0)
SIZE_BOUNDS = (1e3, 1e6)
FLAG = "f-a"  # labels checkouts_total as f_a
FLAGS = (FLAG, "f-b")
VARIANTS = (None, "blue", "red")
ROUTES = ("/a", "/b")
REQUEST_TIMEOUT = 0.2
FLUSH_TIMEOUT = 0.6
CLOSE_TIMEOUT = 0.6
CHILD_WAIT = 10.0  # a child that has not ended by then is hung (item 11c)
NOT_EVALUATED = "not_evaluated"

#: Drop reasons the model accounts for from the server's side (per series) or in files.
SERVER_REASONS = ("rejected_by_server", "too_large")
FILE_REASONS = ("spool_corrupt",)

settings.register_profile(
    "ci", max_examples=25, stateful_step_count=25, deadline=None, derandomize=True,
    database=None, suppress_health_check=list(HealthCheck), print_blob=False,
    phases=[Phase.explicit, Phase.generate],  # bounded even when it fails; see "shrink"
)
settings.register_profile(  # the ci profile's examples, and a failure shrunk to its essence
    "shrink", settings.get_profile("ci"), phases=list(Phase),
)
settings.register_profile(
    "long", max_examples=300, stateful_step_count=50, deadline=None, database=None,
    suppress_health_check=list(HealthCheck), print_blob=True,
)
settings.register_profile(  # a first look at a failure: no shrinking, the history as found
    "explore", max_examples=50, stateful_step_count=20, deadline=None, database=None,
    suppress_health_check=list(HealthCheck), phases=[Phase.generate],
)
PROFILE = os.environ.get("IMPACTAGENT_MODEL_PROFILE", "ci")
EXCLUDED = {item.strip() for item in os.environ.get("IMPACTAGENT_MODEL_EXCLUDE", "").split(",")
            if item.strip()}


def included(*items: str) -> bool:
    """False when exploration left out histories that reach any of these issue-13 items."""
    return not EXCLUDED.intersection(items)


def expected_state(enabled: bool, variant: Optional[str]) -> str:
    """The label a flag-labelled metric should carry after this evaluation (README)."""
    if enabled and variant and variant != "disabled":
        return variant
    return "enabled" if enabled else "disabled"


# -- what an app does ---------------------------------------------------------------------------

# An op is a plain tuple, so that hypothesis prints a failing history as code to replay.
counter_op = st.tuples(st.just("jobs"), st.integers(1, 1000))
route_op = st.tuples(st.just("hits"), st.sampled_from(ROUTES), st.integers(1, 50))
observe_op = st.tuples(st.just("latency"), st.floats(0, 20, allow_nan=False).map(
    lambda v: round(v, 3)))
flag_op = st.tuples(st.just("flag"), st.sampled_from(FLAGS), st.booleans(),
                    st.sampled_from(VARIANTS))
checkout_op = st.tuples(st.just("checkout"), st.integers(1, 5))
gauge_op = st.tuples(st.just("depth"), st.integers(-1000, 1000) | st.floats(
    -1e6, 1e6, allow_nan=False).map(lambda v: round(v, 2)))
#: What any thread may do; gauges only from the main thread (concurrent sets have no "last").
shared_ops = st.one_of(counter_op, route_op, observe_op, flag_op, checkout_op)
main_ops = st.one_of(shared_ops, gauge_op)


@dataclass
class Handles:
    """What the app holds of one agent: its metrics and a reference to ``record_flag``."""

    agent: impactagent.Agent
    record_flag: Callable[..., None]
    jobs: Any
    hits: Any
    latency: Any
    depth: Any
    checkouts: Any
    sizes: Any = None  # a histogram for observations near a double's limit


def do(handles: Handles, op: Tuple[Any, ...]) -> None:
    """Perform one op on the agent (in whatever thread or process runs it)."""
    kind = op[0]
    if kind == "jobs":
        handles.jobs.inc(op[1])
    elif kind == "hits":
        handles.hits.labels(route=op[1]).inc(op[2])
    elif kind == "latency":
        handles.latency.observe(op[1])
    elif kind == "flag":
        handles.record_flag(op[1], op[2], op[3])
    elif kind == "checkout":
        handles.checkouts.inc(op[1])
    elif kind == "depth":
        handles.depth.set(op[1])
    else:  # pragma: no cover - a typo in a strategy
        raise AssertionError(f"unknown op {op!r}")


def expect(tally: Tally, notes: Dict[str, str], op: Tuple[Any, ...]) -> None:
    """What ``do(op)`` records, by the documented semantics; ``notes`` are the flag states
    the thread or task that runs it has noted (its own: copy-on-write outside a scope)."""
    kind = op[0]
    if kind == "jobs":
        tally.count("jobs_total", {}, op[1])
    elif kind == "hits":
        tally.count("hits_total", {"route": op[1]}, op[2])
    elif kind == "latency":
        tally.observe("latency_seconds", {}, op[1], BOUNDS)
    elif kind == "flag":
        tally.flag(op[1], op[2], op[3])
        notes[op[1]] = expected_state(op[2], op[3])
    elif kind == "checkout":
        tally.count("checkouts_total", {"f_a": notes.get(FLAG, NOT_EVALUATED)}, op[1])
    elif kind == "depth":
        tally.set_gauge("depth", {}, op[1])


def run_threads(bodies: Sequence[Callable[[], None]]) -> None:
    """Run each body in its own thread, started together, and join them (bounded)."""
    barrier = threading.Barrier(len(bodies))
    errors: List[BaseException] = []

    def run(body: Callable[[], None]) -> None:
        try:
            barrier.wait(5)
            body()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a recording thread hung"
    if errors:
        raise errors[0]


# -- what a server answers -----------------------------------------------------------------------

def answer_kinds() -> List[str]:
    kinds = ["accept", "late", "bad", "unauth", "too_large", "limited", "error", "reset",
             "stall", "trickle", "cut"]
    if included("3"):
        kinds += ["moved", "redirect"]
    return kinds


answers = st.sampled_from(answer_kinds()).flatmap(
    lambda kind: st.builds(Drawn, st.just(kind), st.integers(0, 1)
                           if kind in ("limited", "error") else st.just(0)))
answer_lists = st.lists(answers, max_size=4)
failing = st.builds(Drawn, st.sampled_from(["stall", "reset", "error"]), st.just(0))


# -- other processes -----------------------------------------------------------------------------

OTHER_PROCESS = """
import json, time
real = time.time
time.time = lambda: real() + {step}  # this process's wall clock is stepped
import impactagent
agent = impactagent.Agent({app!r}, url={url!r}, api_key={token!r}, spool_dir={spool!r},
                          spool_max_bytes={spool_max}, request_timeout={timeout},
                          register=False)
agent.flush(timeout=2)
agent.close(timeout=1)
stats = agent.statistics()
print(json.dumps({{"dropped": stats["dropped"], "error": None,
                  "possibly_duplicated_events":
                      stats["delivery"]["possibly_duplicated_events"]}}))
"""

# -- forked children -----------------------------------------------------------------------------

def _report(agent: impactagent.Agent, fd: int, error: Optional[str] = None) -> None:
    """Send the child's drop and double-count counters to the parent (they die with it)."""
    try:
        stats = agent.statistics()
        message = {"dropped": stats["dropped"],
                   "possibly_duplicated_events":
                       stats["delivery"]["possibly_duplicated_events"],
                   "error": error}
    except BaseException:
        message = {"dropped": {}, "possibly_duplicated_events": 0,
                   "error": error or traceback.format_exc()}
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(message).encode())
        os.close(fd)


def _child(handles: Handles, ops: Sequence[Tuple[Any, ...]], how: str, fd: int) -> None:
    """The body of a forked child; never returns into the parent's stack."""
    code = 0
    _dump_stacks_when_asked()
    try:
        for op in ops:
            do(handles, op)
        if how == "close":
            handles.agent.close(timeout=2.0)
        elif how == "exit":
            # What the interpreter runs at a normal exit (sys.exit, the end of main).
            atexit._run_exitfuncs()
        elif how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(CHILD_WAIT)  # the agent's handler ends the process before this ends
            _report(handles.agent, fd, "still alive after SIGTERM")
            os._exit(3)
        elif how == "os_exit":
            os._exit(0)
        _report(handles.agent, fd)
    except BaseException:
        _report(handles.agent, fd, traceback.format_exc())
        code = 1
    finally:
        os._exit(code)


def _multiprocessing_child(handles: Handles, ops: Sequence[Tuple[Any, ...]], fd: int) -> None:
    _dump_stacks_when_asked()
    # Reported by the last of multiprocessing's exit finalizers: after any the agent adds.
    multiprocessing.util.Finalize(None, _report, args=(handles.agent, fd),
                                  exitpriority=-(10**6))
    for op in ops:
        do(handles, op)


def _dump_stacks_when_asked() -> None:
    """In a child: write every thread's stack to stderr on SIGUSR2, which the parent sends
    to a child it is about to kill as hung, so the failure shows where the child waited."""
    faulthandler.register(signal.SIGUSR2, all_threads=True)


def _kill_hung(pid: int) -> None:
    os.kill(pid, signal.SIGUSR2)
    time.sleep(0.5)  # bounded: time for the child to write its stacks (pytest shows them)
    os.kill(pid, signal.SIGKILL)


def _read_report(fd: int) -> Optional[Dict[str, Any]]:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks)) if chunks else None


def _wait_for(pid: int) -> Optional[int]:
    """The child's wait status, or None if it did not end within CHILD_WAIT (it is killed)."""
    deadline = time.monotonic() + CHILD_WAIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    _kill_hung(pid)
    os.waitpid(pid, 0)
    return None


# -- the machine ---------------------------------------------------------------------------------

class AgentModel(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.server: DrawnServer = start_servers()
        self.root = Path(tempfile.mkdtemp(prefix="impactagent-model-"))
        self.recorded = Tally()
        self.agents: List[impactagent.Agent] = []  # every agent made, the current one last
        self.handles: Optional[Handles] = None
        self.children: List[Dict[str, Any]] = []  # reports of forked children
        self.unreported_children = 0
        # Flag states the main thread has noted (contextvars outlive an example).
        self.main_notes = dict(impactagent.flag_states())
        self.spool_dir: Optional[Path] = None
        self.garbage: Set[str] = set()  # spool files that are not bodies (planted, corrupted)
        self.links: Set[str] = set()  # symlinks planted in the spool
        self.uncertain_gauges = False  # a gauge value was destroyed on disk by the test
        self.options: Dict[str, Any] = {}

    # -- set-up and agents ---------------------------------------------------------------------

    @initialize(spool=st.sampled_from(["none", "big", "small"]),
                max_payload=st.sampled_from([95_000, 1_500]),
                capture_early=st.booleans() if included("14") else st.just(False))
    def configure(self, spool: str, max_payload: int, capture_early: bool) -> None:
        """``small`` spools hold a couple of bodies; ``capture_early`` takes a reference to
        ``agent.record_flag`` before any flag-labelled metric is defined (as an app that
        passes it to a helper at start-up does)."""
        self.options = {"max_payload_bytes": max_payload, "capture_early": capture_early}
        if spool != "none":
            self.spool_dir = self.root / "spool"
            self.options["spool_dir"] = str(self.spool_dir)
            self.options["spool_max_bytes"] = 1_000_000 if spool == "big" else 3_000
        self._new_agent()

    def _new_agent(self) -> None:
        options = {k: v for k, v in self.options.items() if k != "capture_early"}
        agent = impactagent.Agent(
            APP, url=self.server.api_url, api_key=TOKEN, flush_interval=3600,
            request_timeout=REQUEST_TIMEOUT, shutdown_timeout=CLOSE_TIMEOUT, **options,
        )
        early = agent.record_flag if self.options["capture_early"] else None
        handles = Handles(
            agent=agent, record_flag=early or agent.record_flag,
            jobs=agent.counter("jobs_total", "Jobs done"),
            hits=agent.counter("hits_total", "Hits", labels=("route",)),
            latency=agent.histogram("latency_seconds", "Latency", buckets=BOUNDS),
            depth=agent.gauge("depth", "Queue depth"),
            checkouts=agent.counter("checkouts_total", "Checkouts", flags=(FLAG,)),
            sizes=agent.histogram("size_bytes", "Sizes", buckets=SIZE_BOUNDS),
        )
        if early is None:
            handles.record_flag = agent.record_flag
        # The flusher runs but never on its own (hourly): the model flushes, closes and forks.
        agent.start()
        self.agents.append(agent)
        self.handles = handles

    @property
    def agent(self) -> impactagent.Agent:
        return self.agents[-1]

    def _restart(self) -> None:
        """A new agent on the same spool: what a restarted process does."""
        self._new_agent()

    def teardown(self) -> None:
        self.server.queue()
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.close(timeout=0.5)
        stop_servers(self.server)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- recording -----------------------------------------------------------------------------

    @rule(ops=st.lists(main_ops, min_size=1, max_size=6))
    def record(self, ops: List[Tuple[Any, ...]]) -> None:
        assert self.handles is not None
        for op in ops:
            do(self.handles, op)
            expect(self.recorded, self.main_notes, op)

    @rule(per_thread=st.lists(st.lists(shared_ops, min_size=1, max_size=20), min_size=2,
                              max_size=3))
    def record_in_threads(self, per_thread: List[List[Tuple[Any, ...]]]) -> None:
        self._threads(per_thread)

    def _threads(self, per_thread: List[List[Tuple[Any, ...]]],
                 main: Optional[Callable[[], None]] = None) -> None:
        handles = self.handles
        assert handles is not None

        def body(ops: List[Tuple[Any, ...]]) -> Callable[[], None]:
            def run() -> None:
                for op in ops:
                    do(handles, op)
            return run

        run_threads([body(ops) for ops in per_thread] + ([main] if main else []))
        for ops in per_thread:
            notes: Dict[str, str] = {}  # a new thread starts with no flag noted
            for op in ops:
                expect(self.recorded, notes, op)

    @precondition(lambda self: included("13"))
    @rule(tasks=st.lists(st.tuples(st.booleans(), st.sampled_from(VARIANTS)), min_size=2,
                         max_size=3))
    def tasks_label_their_own_checkouts(self, tasks: List[Tuple[bool, Optional[str]]]) -> None:
        """Concurrent asyncio tasks, each deciding FLAG and then counting a checkout: each
        checkout carries its own task's state (item 13)."""
        handles = self.handles
        assert handles is not None

        async def one(enabled: bool, variant: Optional[str]) -> None:
            handles.record_flag(FLAG, enabled, variant)
            await asyncio.sleep(0)
            handles.checkouts.inc()

        async def together() -> None:
            await asyncio.gather(*(one(e, v) for e, v in tasks))

        asyncio.run(together())
        for enabled, variant in tasks:
            notes = dict(self.main_notes)  # a task starts from its creator's states
            expect(self.recorded, notes, ("flag", FLAG, enabled, variant))
            expect(self.recorded, notes, ("checkout", 1))

    @precondition(lambda self: included("4", "7", "8", "9"))
    @rule(kind=st.sampled_from(["decimal_gauge", "fraction_gauge", "bool_gauge", "past_safe",
                                "huge_counter", "huge_observations", "huge_flag_name"]))
    def record_an_odd_value(self, kind: str) -> None:
        """A value at or past what the server takes (items 4, 7, 8, 9). The call either
        refuses it (TypeError or ValueError: nothing recorded) or records it; what it
        records is then delivered as recorded, or dropped and counted (in events), and
        never sent where the server throws it (and the rest of its body) away."""
        handles = self.handles
        assert handles is not None

        def attempt(call: Callable[[], None], then: Callable[[], None]) -> None:
            try:
                call()
            except (TypeError, ValueError, OverflowError):
                return  # refused at the call, as the README allows: nothing recorded
            then()

        if kind in ("decimal_gauge", "fraction_gauge", "bool_gauge"):
            value: Any = {"decimal_gauge": Decimal("1.5"), "fraction_gauge": Fraction(3, 2),
                          "bool_gauge": True}[kind]
            attempt(lambda: handles.depth.set(value),
                    lambda: self.recorded.set_gauge("depth", {}, value))
        elif kind in ("past_safe", "huge_counter"):
            amount = 2**53 if kind == "past_safe" else 10**30
            attempt(lambda: handles.jobs.inc(amount),
                    lambda: self.recorded.count("jobs_total", {}, amount))
        elif kind == "huge_observations":
            for size in (1e308, 1e308, 5e3):
                attempt(lambda v=size: handles.sizes.observe(v),  # type: ignore[misc]
                        lambda v=size: self.recorded.observe("size_bytes", {}, v, SIZE_BOUNDS))
        else:
            name = "x" * 100_000
            for _ in range(3):
                attempt(lambda: handles.record_flag(name, True),
                        lambda: self.recorded.flag(name, True, None))

    # -- flushing ------------------------------------------------------------------------------

    @rule(answers=answer_lists)
    def flush(self, answers: List[Drawn]) -> None:
        self._flush(answers)

    @rule(answers=answer_lists,
          per_thread=st.lists(st.lists(shared_ops, min_size=1, max_size=30), min_size=1,
                              max_size=2))
    def flush_while_recording(self, answers: List[Drawn],
                              per_thread: List[List[Tuple[Any, ...]]]) -> None:
        self.server.queue(*answers)
        agent = self.agent
        self._threads(per_thread, main=lambda: agent.flush(timeout=FLUSH_TIMEOUT) and None)

    def _flush(self, answers: List[Drawn]) -> None:
        stopped = self._stopped_by_401()
        before = len(self.server.log())
        self.server.queue(*answers)
        self.agent.flush(timeout=FLUSH_TIMEOUT)
        if stopped:
            mine = self._mine(self.server.log()[before:])
            assert not mine, f"an agent stopped by a 401 sent {len(mine)} more bodies"

    def _mine(self, seen: List[Seen]) -> List[Seen]:
        connection = self.agent.identity.connection_id
        return [s for s in seen if s.connection_id == connection]

    def _stopped_by_401(self) -> bool:
        return any(s.status == 401 for s in self._mine(self.server.log()))

    # -- closing and restarting ----------------------------------------------------------------

    @rule(answers=answer_lists)
    def close_and_restart(self, answers: List[Drawn]) -> None:
        self.server.queue(*answers)
        self.agent.close(timeout=CLOSE_TIMEOUT)
        self._restart()

    @precondition(lambda self: included("2"))
    @rule(answers=st.lists(failing, min_size=1, max_size=6))
    def close_while_a_flush_is_in_flight(self, answers: List[Drawn]) -> None:
        """close() while another thread's flush waits on the server (item 2)."""
        agent = self.agent
        connection = agent.identity.connection_id
        before = len(self.server.log())
        self.server.queue(*answers)
        outcome: Dict[str, Any] = {}

        def flush() -> None:
            try:
                outcome["result"] = agent.flush(timeout=2.0)
            except BaseException as error:
                outcome["error"] = error

        thread = threading.Thread(target=flush)
        thread.start()
        for _ in range(200):  # bounded: until the flush's first POST has arrived
            if any(s.connection_id == connection for s in self.server.log()[before:]):
                break
            time.sleep(0.005)
        agent.close(timeout=0.3)
        thread.join(10)
        assert not thread.is_alive(), "the in-flight flush never returned"
        if "error" in outcome:
            raise outcome["error"]
        self._restart()

    # -- forked children -----------------------------------------------------------------------

    @rule(how=st.sampled_from([h for h, items in (
              ("close", ()), ("exit", ()), ("os_exit", ()), ("multiprocessing", ("11",)),
              ("sigterm", ("1",))) if included(*items)]),
          ops=st.lists(shared_ops, min_size=1, max_size=8))
    def fork_child(self, how: str, ops: List[Tuple[Any, ...]]) -> None:
        """A forked child records and ends (see the module docstring for each ``how``).
        The server takes everything meanwhile; the child's drops come back through a pipe."""
        handles = self.handles
        assert handles is not None
        stopped = self._stopped_by_401()
        # A child stopped by a 401 that SIGTERM ends spools its window at close, and with a
        # small spool evicts older bodies to make room: dropped and counted (spool_full) in
        # the child, whose counters nobody can read after SIGTERM. Those bodies are known
        # here, so the model counts what vanished as the child's drop.
        watched = (self._spool_events() if how == "sigterm" and stopped
                   and self.spool_dir is not None else None)
        self.server.queue()
        read_end, write_end = os.pipe()
        status: Optional[int] = None
        if how == "multiprocessing":
            process = multiprocessing.get_context("fork").Process(
                target=_multiprocessing_child, args=(handles, ops, write_end))
            process.start()
            os.close(write_end)
            process.join(CHILD_WAIT)
            hung = process.is_alive()
            if hung and process.pid is not None:
                _kill_hung(process.pid)
                process.join()
        else:
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                _child(handles, ops, how, write_end)
            os.close(write_end)
            status = _wait_for(pid)
            hung = status is None
        report = _read_report(read_end)
        if report is not None:
            assert report["error"] is None, f"the forked child ({how}) failed:\n{report['error']}"
            self.children.append(report)
        elif how != "os_exit":
            self.unreported_children += 1
        assert not hung, f"a forked child ({how}) hung (item 11c)"
        if how == "multiprocessing":
            assert process.exitcode == 0, f"multiprocessing child exit code {process.exitcode}"
        elif how == "sigterm":
            assert status is not None and os.WIFSIGNALED(status) and (
                os.WTERMSIG(status) == signal.SIGTERM), (
                f"after SIGTERM the child must end as SIGTERM would: status {status}")
        else:
            assert status is not None and os.waitstatus_to_exitcode(status) == 0, (
                f"child exit status {status}")
        # A child of an agent stopped by a 401 cannot send: it counts its window as dropped,
        # and after SIGTERM nobody can read its counters, so the model cannot see that count.
        # Without a spool that window is counted as dropped in the child; with one, it is on
        # disk like any other.
        invisible = how == "os_exit" or (how == "sigterm" and stopped
                                          and self.spool_dir is None)
        if watched is not None:
            left = self._spool_events()
            evicted = sum(events for name, events in watched.items() if name not in left)
            if evicted:
                self.children.append({"dropped": {"spool_full": evicted},
                                      "possibly_duplicated_events": 0})
        if not invisible:
            notes = dict(self.main_notes)  # the child starts with its parent's states
            for op in ops:
                expect(self.recorded, notes, op)

    @precondition(lambda self: self.spool_dir is not None)
    @rule(answers=answer_lists, step=st.sampled_from([-3600.0, 0.0, 3600.0]))
    def another_process_replays_the_spool(self, answers: List[Drawn], step: float) -> None:
        """An independently started process (another container, say) on the same spool,
        whose wall clock is stepped by ``step`` seconds, replays it and closes."""
        assert self.spool_dir is not None
        self.server.queue(*answers)
        ended = child.run(OTHER_PROCESS.format(
            step=step, app=APP, url=self.server.api_url, token=TOKEN,
            spool=str(self.spool_dir), spool_max=self.options.get("spool_max_bytes"),
            timeout=REQUEST_TIMEOUT), timeout=60)
        assert ended.returncode == 0, ended.stderr
        self.children.append(json.loads(ended.stdout.splitlines()[-1]))

    # -- the spool on disk ---------------------------------------------------------------------

    def _spool_events(self) -> Dict[str, int]:
        """The events each readable spooled body carries, by file name."""
        events: Dict[str, int] = {}
        for path in self._spool_bodies():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                events[path.name] = impactagent.count_events(json.loads(path.read_bytes()))
        return events

    def _spool_bodies(self) -> List[Path]:
        assert self.spool_dir is not None
        return [p for p in spool_files(self.spool_dir)
                if p.name not in self.garbage and p.name not in self.links]

    @precondition(lambda self: self.spool_dir is not None)
    @rule(kind=st.sampled_from([k for k, items in (
              ("body", ()), ("not_a_body", ("6",)), ("garbage", ()), ("foreign_link", ("12",)))
              if included(*items)]),
          ops=st.lists(st.one_of(counter_op, route_op, observe_op, flag_op), min_size=1,
                       max_size=4))
    def plant_spool_file(self, kind: str, ops: List[Tuple[Any, ...]]) -> None:
        """Put a file in the spool as another process (or an attacker) would."""
        assert self.spool_dir is not None
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        name = f"{ulid.new().str}.json"
        path = self.spool_dir / name
        if kind == "body":  # left by an earlier process of this app: it counts as recorded
            scratch = impactagent.Agent(APP, environment="production")
            scratch_handles = Handles(
                agent=scratch, record_flag=scratch.record_flag,
                jobs=scratch.counter("jobs_total", "Jobs done"),
                hits=scratch.counter("hits_total", "Hits", labels=("route",)),
                latency=scratch.histogram("latency_seconds", "Latency", buckets=BOUNDS),
                depth=None, checkouts=None,
            )
            for op in ops:
                do(scratch_handles, op)
                expect(self.recorded, {}, op)
            (payload,) = scratch.build_payloads(scratch.collect())
            path.write_bytes(payload.body)
        elif kind == "not_a_body":  # JSON with an appName, but not a ClientMetrics body
            path.write_text(json.dumps({"appName": APP, "bucket": "x"}))
            self.garbage.add(name)
        elif kind == "garbage":
            path.write_bytes(b"\x00not json{")
            self.garbage.add(name)
        else:  # a link to another app's body, outside the spool
            target = self.root / f"{OTHER_APP}.json"
            target.write_text(json.dumps({
                "appName": OTHER_APP, "environment": "production",
                "bucket": {"start": "2026-01-01T00:00:00.000Z",
                           "stop": "2026-01-01T00:01:00.000Z",
                           "toggles": {"other-flag": {"yes": 1, "no": 0, "variants": {}}}}}))
            path.symlink_to(target)
            self.links.add(name)

    @precondition(lambda self: self.spool_dir is not None)
    @rule(data=st.data())
    def corrupt_spool_file(self, data: st.DataObject) -> None:
        """Truncate a spooled body (a torn disk, an editor): its events are gone, and the
        agent must set the file aside and count it (in files)."""
        # Drawn whether or not there is a file: what is on disk depends on timing (a flush
        # that met a slow answer), and a draw that only sometimes happens makes hypothesis
        # see the same history draw different things (FlakyStrategyDefinition).
        choice = data.draw(st.integers(min_value=0, max_value=63), label="file")
        bodies = [p for p in self._spool_bodies() if p.name.endswith(".json")]
        if not bodies:
            return
        path = bodies[choice % len(bodies)]
        self._destroy(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        self.garbage.add(path.name)

    @precondition(lambda self: self.spool_dir is not None and included("5"))
    @rule()
    def remove_spool_dir(self) -> None:
        """The spool directory disappears while the agent runs (item 5): what it held is
        gone (not the agent's doing); what the agent writes later must be kept or counted."""
        assert self.spool_dir is not None
        for path in self._spool_bodies():
            self._destroy(path)
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.garbage.clear()
        self.links.clear()

    def _destroy(self, path: Path) -> None:
        """The test destroyed this body: the model forgets it was recorded."""
        document = read_json(path)
        if document is None or document.get("appName") != APP:
            return
        lost = documents_tally([document])
        self.recorded.add(lost, sign=-1)
        if any(m["type"] == "gauge" for m in document.get("impactMetrics") or []):
            self.uncertain_gauges = True

    # -- the invariant -------------------------------------------------------------------------

    @invariant()
    def every_event_is_accounted_for(self) -> None:
        if not self.agents:
            return
        Accounts(self).check()


class Accounts:
    """One look at everything: the server's log, the agents, the spool; then the checks."""

    def __init__(self, model: AgentModel) -> None:
        self.model = model
        stats = [agent.statistics() for agent in model.agents]
        self.dropped: Dict[str, int] = {}
        for drops in [s["dropped"] for s in stats] + [c["dropped"] for c in model.children]:
            for reason, n in drops.items():
                self.dropped[reason] = self.dropped.get(reason, 0) + n
        self.possibly_duplicated = (
            sum(s["delivery"]["possibly_duplicated_events"] for s in stats)
            + sum(c["possibly_duplicated_events"] for c in model.children))
        self.local_drops = sum(n for reason, n in self.dropped.items()
                               if reason not in SERVER_REASONS + FILE_REASONS)
        log = model.server.log()
        self.delivered = Tally()
        self.refused = Tally()
        self.refused_400 = 0
        self.refused_413 = 0
        self.foreign_apps = 0
        for seen in log:
            document = seen.document
            if document is None or document.get("appName") != APP:
                self.foreign_apps += document is not None
                continue
            if seen.stored:
                self.delivered.add_document(document, metrics=not seen.metrics_discarded)
            elif seen.status == 400:
                self.refused.add_document(document)
                self.refused_400 += impactagent.count_events(document)
            elif seen.status == 413 and _units(document) <= 1:
                self.refused.add_document(document)
                self.refused_413 += impactagent.count_events(document)
        self.server_gauges = self.delivered.gauges  # last stored value per gauge series
        self.pending = documents_tally(pending_documents(model.agent))
        self.closed_holding = [pending_documents(agent) for agent in model.agents[:-1]]
        self.disk = Tally()
        self.claimed: List[str] = []
        self.disk_gauges: Dict[Any, Any] = {}
        if model.spool_dir is not None:
            for path in spool_files(model.spool_dir):
                if path.name.endswith(".sending"):
                    self.claimed.append(path.name)
                if path.name in model.garbage or path.name in model.links:
                    continue
                document = read_json(path)
                if document is None or document.get("appName") != APP:
                    continue
                self.disk.add_document(document)
        self.disk_gauges = self.disk.gauges  # newest file wins (names sort by time)

    def check(self) -> None:
        self.check_closed_agents_hold_nothing()
        self.check_nothing_went_elsewhere()
        self.check_no_file_stays_claimed()
        self.check_server_refusals_are_counted()
        self.check_flag_states()
        self.check_events()
        self.check_variants()
        self.check_histograms()
        self.check_gauges()

    def check_closed_agents_hold_nothing(self) -> None:
        for documents in self.closed_holding:
            held = sum(impactagent.count_events(d) for d in documents)
            assert held == 0, (
                f"a closed agent still holds {held} events: neither delivered, spooled nor "
                f"counted as not_delivered_by_close")

    def check_nothing_went_elsewhere(self) -> None:
        foreign = self.model.server.foreign.bodies
        assert not foreign, f"{len(foreign)} bodies were POSTed to another origin (a 307)"
        assert self.model.server.logins == 0, (
            "a 301 was followed to a login page, and its 200 taken for a delivery")
        assert self.foreign_apps == 0, (
            f"{self.foreign_apps} bodies of another app were sent (a spool symlink followed)")

    def check_no_file_stays_claimed(self) -> None:
        assert not self.claimed, f"spool files left claimed between flushes: {self.claimed}"

    def check_server_refusals_are_counted(self) -> None:
        assert self.dropped.get("rejected_by_server", 0) == self.refused_400, (
            f"the server answered 400 to bodies with {self.refused_400} events; "
            f"counted rejected_by_server: {self.dropped.get('rejected_by_server', 0)}")
        assert self.dropped.get("too_large", 0) == self.refused_413, (
            f"the server answered 413 to unsplittable bodies with {self.refused_413} events; "
            f"counted too_large: {self.dropped.get('too_large', 0)}")

    def _gaps(self, recorded: Dict[Any, int], *others: Dict[Any, int]) -> Dict[Any, int]:
        keys = set(recorded).union(*others)
        gaps = {}
        for key in keys:
            gap = recorded.get(key, 0) - sum(other.get(key, 0) for other in others)
            if gap:
                gaps[key] = gap
        return gaps

    def _explain(self, gaps: Dict[Any, int]) -> str:
        def name(key: Any) -> str:
            return show(key) if len(key) == 3 else f"variant {key}"

        lines = []
        for key, gap in sorted(gaps.items(), key=lambda kv: str(kv[0])):
            parts = [(label, tally.events.get(key, 0) if len(key) == 3
                      else tally.variants.get(key, 0))
                     for label, tally in (("recorded", self.model.recorded),
                                          ("delivered", self.delivered),
                                          ("refused", self.refused),
                                          ("pending", self.pending), ("on disk", self.disk))]
            lines.append(f"  {name(key)}: gap {gap:+d} ("
                         + ", ".join(f"{label} {n}" for label, n in parts) + ")")
        return "\n".join(lines)

    def _balance(self, gaps: Dict[Any, int], what: str) -> None:
        missing = sum(g for g in gaps.values() if g > 0)
        excess = -sum(g for g in gaps.values() if g < 0)
        assert missing <= self.local_drops, (
            f"{what}: {missing} recorded events are neither delivered, refused by the server, "
            f"pending nor on disk, and only {self.local_drops} are counted as dropped "
            f"({self.dropped}):\n{self._explain(gaps)}")
        assert excess <= self.possibly_duplicated, (
            f"{what}: the server holds {excess} events more than recorded, and only "
            f"{self.possibly_duplicated} are counted as possibly duplicated:\n"
            f"{self._explain(gaps)}")

    def check_events(self) -> None:
        gaps = self._gaps(self.model.recorded.events, self.delivered.events,
                          self.refused.events, self.pending.events, self.disk.events)
        self._balance(gaps, "events")

    def check_variants(self) -> None:
        gaps = self._gaps(self.model.recorded.variants, self.delivered.variants,
                          self.refused.variants, self.pending.variants, self.disk.variants)
        self._balance(gaps, "flag variants")

    def check_histograms(self) -> None:
        """Sums and buckets add up whenever the count does and no double count or drop
        could hide a difference."""
        if self.possibly_duplicated or self.local_drops:
            return
        parts = (self.delivered, self.refused, self.pending, self.disk)
        for key, recorded_sum in self.model.recorded.sums.items():
            if not math.isfinite(recorded_sum) or abs(recorded_sum) > 1e300:
                continue  # near a double's limit the order of additions decides the sum
            total = sum(part.sums.get(key, 0.0) for part in parts)
            assert abs(total - recorded_sum) <= 1e-6 * max(1.0, abs(recorded_sum)), (
                f"{show(key)}: sums add up to {total}, recorded {recorded_sum}")
            buckets = self.model.recorded.buckets.get(key, {})
            for le in set(buckets).union(*(p.buckets.get(key, {}) for p in parts)):
                seen = sum(p.buckets.get(key, {}).get(le, 0) for p in parts)
                assert seen == buckets.get(le, 0), (
                    f"{show(key)}: bucket le={le} adds up to {seen}, recorded "
                    f"{buckets.get(le, 0)}")

    def check_gauges(self) -> None:
        """The last value set is what the server ends with: pending wins, then the newest
        file on disk, then what the server stored last."""
        if self.model.uncertain_gauges or self.local_drops:
            return
        for series, value in self.model.recorded.gauges.items():
            if series in self.pending.gauges:
                holds, where = self.pending.gauges[series], "pending"
            elif series in self.disk_gauges:
                holds, where = self.disk_gauges[series], "on disk"
            else:
                holds, where = self.server_gauges.get(series), "at the server"
            if holds != value and value in self.refused.gauges.values():
                continue  # the last value went out in a body the server refused: counted
            assert holds == value, (
                f"gauge {series[0]}: the last value set was {value!r}, but {where} it is "
                f"{holds!r}")

    def check_flag_states(self) -> None:
        """The main thread's noted state of FLAG is what it decided last (item 13: tasks
        must not write into it)."""
        noted = impactagent.flag_states().get(FLAG, NOT_EVALUATED)
        expected = self.model.main_notes.get(FLAG, NOT_EVALUATED)
        assert noted == expected, (
            f"the main thread's state of {FLAG!r} is {noted!r}; it decided {expected!r} last")


def _units(document: Dict[str, Any]) -> int:
    """The indivisible items of a body (flags and samples): one item cannot be split."""
    toggles = len((document.get("bucket") or {}).get("toggles") or {})
    return toggles + sum(len(m["samples"]) for m in document.get("impactMetrics") or [])


AgentModel.TestCase.settings = settings.get_profile(PROFILE)
TestAgentModel = AgentModel.TestCase

__all__ = ["AgentModel", "Handles", "TestAgentModel", "do", "expect"]
