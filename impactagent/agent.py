"""The ``Agent``: one object an app creates to define metrics and count flags. It wires the
recording core to delivery and holds no logic of its own."""

from __future__ import annotations

import dataclasses
import logging
import weakref
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, TypeVar, Union, cast

from .agent_statistics import Statistics
from .core._family import MetricFamily
from .core.charts import Chart, ChartConfig
from .core.counter import Counter
from .core.flag_decorator import flag_decorator
from .core.gauge import Gauge
from .core.histogram import DEFAULT_BUCKETS, Histogram
from .core.payload import Identity, Payload, build_payloads
from .core.recorder import Recorder
from .core.snapshot import Snapshot
from .delivery.delivery import FlushResult
from .delivery.lifecycle import Lifecycle
from .delivery.settings import Settings
from .delivery.transport_api import Sender

if TYPE_CHECKING:  # imports prometheus_client, an optional extra
    from .prometheus.workers import WorkersView

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound="MetricFamily[Any]")
Charts = Union[Chart, Sequence[Chart], None]
#: Label values by name, or UnleashClient's ``MetricFlagContext`` (it has ``flag_names``).
LabelsOrFlagContext = Union[Mapping[str, Any], Any, None]


class _Unset:
    """The default of every setting keyword of :class:`Agent`: not given, use Settings'."""

    def __repr__(self) -> str:
        return "<from Settings>"


#: Typed ``Any`` so that each keyword keeps its own type for mypy and IDEs.
UNSET: Any = _Unset()
_SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(Settings))


class Agent:
    """Records impact metrics and flag counts for one app instance.

    >>> agent = Agent(app_name="shop", environment="production")
    >>> checkouts = agent.counter("checkout_total", "Completed checkouts", labels=("route",))
    >>> checkouts.labels(route="/cart").inc()
    >>> agent.record_flag("new-checkout", enabled=True, variant="blue")
    >>> [body] = agent.build_payloads(agent.collect())
    >>> body.document.get("bucket")["toggles"]
    {'new-checkout': {'yes': 1, 'no': 0, 'variants': {'blue': 1}}}
    """

    def __init__(
        self, app_name: str = UNSET, environment: str = UNSET, *,
        url: Optional[str] = UNSET, api_key: Optional[str] = UNSET,
        instance_id: Optional[str] = UNSET, flush_interval: float = UNSET,
        request_timeout: float = UNSET, shutdown_timeout: float = UNSET,
        headers: Optional[Mapping[str, str]] = UNSET, verify: Union[bool, str] = UNSET,
        proxies: Optional[Mapping[str, Optional[str]]] = UNSET, spool_dir: Optional[str] = UNSET,
        spool_max_bytes: int = UNSET, max_series_per_metric: int = UNSET,
        max_flags: int = UNSET, max_payload_bytes: int = UNSET,
        handle_sigterm: bool = UNSET, register: bool = UNSET,
        settings: Optional[Settings] = None, transport: Optional[Sender] = None,
    ) -> None:
        """Each keyword is a field of :class:`~impactagent.delivery.settings.Settings`;
        keywords override a given ``settings=``. ``transport=`` replaces the HTTP transport."""
        given = {name: value for name, value in locals().items()
                 if name in _SETTING_NAMES and value is not UNSET}
        if settings is None:
            if "app_name" not in given:
                raise TypeError("Agent() needs an app_name (or settings=Settings(...))")
            settings = Settings(**given)
        elif not isinstance(settings, Settings):
            raise TypeError(f"settings must be an impactagent.delivery.settings.Settings, "
                            f"got {type(settings).__name__}")
        elif given:
            settings = dataclasses.replace(settings, **given)
        self.settings = settings
        self.recorder = Recorder(max_series=settings.max_series_per_metric,
                                 max_flags=settings.max_flags)
        self.metrics = self.recorder.metrics
        self._flags = self.recorder.flags
        self._charts: dict[str, ChartConfig] = {}
        self._fork_followers: list[weakref.ReferenceType[Any]] = []
        self.lifecycle = Lifecycle(self.settings, self.recorder, transport)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, *,
                 transport: Optional[Sender] = None, **overrides: Any) -> Agent:
        """An agent configured by the ``UNLEASH_*`` and ``IMPACTAGENT_*`` variables; without
        ``UNLEASH_URL`` it only records."""
        agent = cls(settings=Settings.from_env(environ, own_transport=transport is not None,
                                               **overrides), transport=transport)
        if agent.lifecycle.delivery is None:
            logger.info("UNLEASH_URL is not set: recording only, nothing is sent to Unleash "
                        "(statistics() and a Prometheus endpoint still see every count)")
        return agent

    @property
    def identity(self) -> Identity:
        """Who this agent reports as (a forked child gets a new connection id)."""
        return self.lifecycle.identity

    # ``flags=("new-checkout",)`` adds a label ``new_checkout``: the flag's state in the
    # current request or task. ``chart=`` declares how Unleash draws the metric.

    def counter(self, name: str, help: str, labels: Sequence[str] = (), *,
                max_series: Optional[int] = None, flags: Sequence[str] = (),
                chart: Charts = None) -> Counter:
        """Define (or get) a counter: a count of events, sent as deltas."""
        return self._declare(self.metrics.counter(name, help, labels, max_series=max_series,
                                                  flags=flags), chart)

    def gauge(self, name: str, help: str, labels: Sequence[str] = (), *,
              max_series: Optional[int] = None, flags: Sequence[str] = (),
              chart: Charts = None) -> Gauge:
        """Define (or get) a gauge: a value that goes up and down; the last one is sent."""
        return self._declare(self.metrics.gauge(name, help, labels, max_series=max_series,
                                                flags=flags), chart)

    def histogram(self, name: str, help: str, labels: Sequence[str] = (), *,
                  buckets: Sequence[float] = DEFAULT_BUCKETS,
                  max_series: Optional[int] = None, flags: Sequence[str] = (),
                  chart: Charts = None) -> Histogram:
        """Define (or get) a histogram: a distribution in cumulative buckets."""
        return self._declare(self.metrics.histogram(name, help, labels, buckets=buckets,
                                                    max_series=max_series, flags=flags), chart)

    def _declare(self, family: M, chart: Charts) -> M:
        """Note the metric's charts (checked now, so a bad one fails where it is written)."""
        for one in ([chart] if isinstance(chart, Chart) else list(chart or ())):
            config = one.for_metric(family)
            self._charts.setdefault(config.id, config)  # type: ignore[arg-type]
        if family.flags:  # record_flag notes the states of the flags that label a metric
            self._flags.watch(family.flags)
        return family

    def chart_configs(self) -> list[ChartConfig]:
        """Every chart declared with ``chart=`` on this agent's metrics."""
        return list(self._charts.values())

    def flag(self, name: str) -> Callable[[F], F]:
        """Decorate the function that decides flag ``name``; each call is one evaluation (a
        call that raises counts as neither yes nor no).

        >>> agent = Agent("shop")
        >>> @agent.flag("new-checkout")
        ... def new_checkout(user: str) -> bool:
        ...     return user.startswith("beta-")
        >>> new_checkout("beta-ann"), new_checkout("bob")
        (True, False)
        >>> agent.collect().toggles["new-checkout"]
        ToggleDelta(yes=1, no=1, variants={})
        """
        return flag_decorator(name, self._flags.record)

    def record_flag(self, name: str, enabled: bool, variant: Optional[str] = None) -> None:
        """Count one evaluation of flag ``name``; where it labels a metric, note its state."""
        self._flags.record(name, enabled, variant)

    #: What an integration that saw an evaluation calls (the OpenFeature hook, the SDK's).
    count_evaluation = record_flag

    # The Unleash SDKs' names. A ``MetricFlagContext`` is accepted as labels when the metric
    # is labelled by every flag it names.

    def define_counter(self, name: str, help: str, labels: Sequence[str] = (), *,
                       flags: Sequence[str] = ()) -> Counter:
        """``UnleashClient`` spelling of :meth:`counter`."""
        return self.counter(name, help, labels, flags=flags)

    def define_gauge(self, name: str, help: str, labels: Sequence[str] = (), *,
                     flags: Sequence[str] = ()) -> Gauge:
        """``UnleashClient`` spelling of :meth:`gauge`."""
        return self.gauge(name, help, labels, flags=flags)

    def define_histogram(self, name: str, help: str, buckets: Optional[Sequence[float]] = None,
                         labels: Sequence[str] = (), *, flags: Sequence[str] = ()
                         ) -> Histogram:
        """``UnleashClient`` spelling of :meth:`histogram` (``None`` means default buckets)."""
        return self.histogram(name, help, labels, buckets=buckets or DEFAULT_BUCKETS,
                              flags=flags)

    def increment_counter(self, name: str, value: int = 1,
                          labels: LabelsOrFlagContext = None) -> None:
        """Add ``value`` to the counter ``name``; ``labels``: values or a ``MetricFlagContext``."""
        self._series(name, "counter", labels).inc(value)

    def update_gauge(self, name: str, value: float, labels: LabelsOrFlagContext = None
                     ) -> None:
        """Set the gauge ``name`` to ``value`` (``labels`` as for :meth:`increment_counter`)."""
        self._series(name, "gauge", labels).set(value)

    def observe_histogram(self, name: str, value: float, labels: LabelsOrFlagContext = None
                          ) -> None:
        """Observe ``value`` on the histogram ``name`` (``labels`` as for a counter)."""
        self._series(name, "histogram", labels).observe(value)

    def _series(self, name: str, kind: str, labels: LabelsOrFlagContext) -> Any:
        family = self.metrics.get(name)
        if family is None or family.kind != kind:
            found = f"a {family.kind}" if family is not None else "nothing"
            raise ValueError(
                f"no {kind} named {name!r} (found {found}); define it with define_{kind}() first"
            )
        if labels is None or isinstance(labels, Mapping):
            return family.labels(**labels) if labels else family
        flag_names = getattr(labels, "flag_names", None)
        if flag_names is None or isinstance(flag_names, str):
            raise TypeError(f"labels of {kind} {name!r} must be a mapping of label names to "
                            f"values or an UnleashClient MetricFlagContext, got "
                            f"{type(labels).__name__}")
        missing = [flag for flag in flag_names if flag not in family.flags]
        if missing:
            raise ValueError(
                f"{kind} {name!r} is not labelled by the flag(s) {missing}: define it with "
                f"define_{kind}(..., flags={[*family.flags, *missing]!r}); each sample is then "
                f"labelled by the flags' states in the current request")
        return family

    def serve_prometheus(self, port: int, addr: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread; returns the server."""
        server, _thread = _prometheus().serve(self, port, addr)
        return server

    def prometheus_wsgi_app(self) -> Any:
        """A WSGI app serving the scrape."""
        return _prometheus().wsgi_app(self)

    def prometheus_asgi_app(self) -> Any:
        """An ASGI app serving the scrape."""
        return _prometheus().asgi_app(self)

    def prometheus_workers(self, directory: Optional[str] = None, *,
                           publish_interval: float = 1.0) -> WorkersView:
        """One Prometheus view summed over the worker processes sharing ``directory`` (by
        default one per user, app and environment). Call it once, where the agent is made."""
        _prometheus()
        from .prometheus.workers import WorkersView
        from .prometheus.workers.directory import default_directory

        chosen = directory if directory is not None else default_directory(
            self.identity.app_name, self.identity.environment)
        view = WorkersView(self, chosen, publish_interval=publish_interval)
        self.follow_fork(view)
        return view

    def follow_fork(self, follower: Any) -> None:
        """Have :meth:`after_fork` also call ``follower.after_fork()`` (held weakly)."""
        alive = [ref for ref in self._fork_followers if ref() is not None]
        self._fork_followers = [*alive, weakref.ref(follower)]

    def collect(self) -> Snapshot:
        """Take everything recorded since the last collect."""
        return self.recorder.collect()

    def restore(self, snapshot: Snapshot) -> None:
        """Merge back a snapshot that was not delivered: nothing is lost or counted twice."""
        self.recorder.restore(snapshot)

    def build_payloads(self, snapshot: Snapshot) -> list[Payload]:
        """The request bodies for a snapshot, for this agent's identity and size limit."""
        return build_payloads(snapshot, self.identity,
                              max_bytes=self.settings.max_payload_bytes,
                              drops=self.recorder.drops)

    def start(self) -> Agent:
        """Start the background flusher (idempotent); without a url it only records."""
        if self.lifecycle.delivery is not None:
            self.lifecycle.start()
        return self

    def flush(self, timeout: float = 10.0) -> FlushResult:
        """Send everything recorded so far, within ``timeout`` seconds."""
        return self.lifecycle.flush(timeout)

    def close(self, timeout: Optional[float] = None) -> FlushResult:
        """Stop the flusher and send the last window within ``timeout`` seconds; what is
        unsent then is spooled or counted as dropped. Idempotent and thread-safe."""
        return self.lifecycle.close(self.settings.shutdown_timeout if timeout is None
                                     else timeout)

    def after_fork(self) -> None:
        """Call in a child process when the server forks without Python's fork hooks."""
        self.lifecycle.after_fork_in_child()
        for ref in list(self._fork_followers):
            follower = ref()
            if follower is not None:
                follower.after_fork()  # a no-op where Python's fork hook ran it

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def statistics(self) -> Statistics:
        """What was recorded, sent, pending and dropped (keys: :class:`Statistics`)."""
        return cast(Statistics, {
            "recorded": self.recorder.recorded(),
            "pending_events": self.recorder.pending_events(),
            "dropped": self.recorder.drops.as_dict(),
            "series": sum(len(f.series()) for f in self.metrics.families()),
            "flags": len(self.recorder.flags.names()),
            "collect_hook_errors": self.recorder.collect_hook_errors,
            **self.lifecycle.statistics(),
        })

    def __repr__(self) -> str:
        return (f"<Agent app_name={self.identity.app_name!r} "
                f"environment={self.identity.environment!r}>")


def _prometheus() -> Any:
    try:
        from .prometheus import collector
    except ImportError as error:  # prometheus_client is an optional extra
        raise ImportError("the Prometheus endpoint needs prometheus_client: "
                          "pip install 'impactagent[prometheus]'") from error
    return collector
