"""Every Prometheus collector of the daemon, with the exported names as constants.

The daemon owns one `Metrics` and feeds it: `update_from_plan` after each
pass with the plan it built and the observation behind it, `record_reconcile`
with the pass's outcome, `record_event` for each executor event, `set_spec`
when the revision in force or its validity changes, `set_trusted` when it
judges a revision's signatures (`--require-signed-commits`), `observe_placement` and
`observe_convergence` when a plan it was moving arrives, `set_leader` when
it takes the fabric lock (and `drctl_leader` is 0 while it waits for it:
a daemon that does not act serves no plan or VM series; a follower of an
etcd lease does, it observes), `set_leader_seen` and `count_renew_failure`
from the etcd lease (engine/lease/etcd.py), `set_state_dir`
when its state dir stops or starts taking writes or its journal is refused
or waited for; `serve` exposes /metrics through engine/endpoint.py. The
names below are a contract with dashboards, the alert rules in
deploy/prometheus and tests outside this repository: never rename one.

The per-VM families are kept rendered by engine/vm_series.py: a pass
marks for rendering again only the VMs that changed, and a scrape (`exposition_pieces`,
what the endpoint writes) joins kept pieces with prometheus_client's text
of everything else (`others`: a few hundred series). At 100k VMs a scrape
after a pass that changed one VM takes milliseconds where
`generate_latest` of the same series takes seconds (bench/metrics_scale.py);
`registry` yields the same series through prometheus_client, for readers of
values (`get_sample_value`). VMs that leave the spec leave the exposition;
a scrape never sees half of an update.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import prometheus_client
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from reconciler.core import plan, state
from reconciler.core.state import Operation
from reconciler.engine import endpoint, execute, vm_series
from reconciler.engine.execute import EventKind
from reconciler.kits import gcpause

# The per-VM families are rendered in engine/vm_series.py, which names them.
VM_CONVERGED = vm_series.VM_CONVERGED
VM_INFO = vm_series.VM_INFO
VM_BLOCKED = vm_series.VM_BLOCKED
VM_HELD = vm_series.VM_HELD
VM_STUCK = vm_series.VM_STUCK
VM_SUSPENDED = vm_series.VM_SUSPENDED
VM_RUNNING = vm_series.VM_RUNNING
VM_COPIES_RUNNING = vm_series.VM_COPIES_RUNNING
PLAN_CONVERGED = "drctl_plan_converged"
PLAN_PLACED = "drctl_plan_placed"
ACTIONS_TOTAL = "drctl_actions_total"
ACTION_DURATION_SECONDS = "drctl_action_duration_seconds"
ACTIONS_IN_FLIGHT = "drctl_actions_in_flight"
RECONCILE_TOTAL = "drctl_reconcile_total"
RECONCILE_DURATION_SECONDS = "drctl_reconcile_duration_seconds"
SPEC_VALID = "drctl_spec_valid"
SPEC_REVISION_INFO = "drctl_spec_revision_info"
LAST_SPEC_CHANGE_TIMESTAMP_SECONDS = "drctl_last_spec_change_timestamp_seconds"
PLACEMENT_DURATION_SECONDS = "drctl_placement_duration_seconds"
CONVERGENCE_DURATION_SECONDS = "drctl_convergence_duration_seconds"
REPLICATION_LAST_SYNC_TIMESTAMP_SECONDS = vm_series.REPLICATION_LAST_SYNC_TIMESTAMP_SECONDS
REPLICATION_INTERVAL_SECONDS = vm_series.REPLICATION_INTERVAL_SECONDS
SITE_CONNECTED = "drctl_site_connected"
FAILOVER_DATA_LOSS_SECONDS = "drctl_failover_data_loss_seconds"
REVISION_REFUSED = "drctl_revision_refused"
SPEC_REVISION_READABLE = "drctl_spec_revision_readable"
SPEC_REVISION_TRUSTED = "drctl_spec_revision_trusted"
LEADER = "drctl_leader"
LEADER_INFO = "drctl_leader_info"
LEADER_TRANSITIONS_TOTAL = "drctl_leader_transitions_total"
LEASE_RENEW_FAILURES_TOTAL = "drctl_lease_renew_failures_total"
STATE_WRITABLE = "drctl_state_writable"
JOURNAL_USABLE = "drctl_journal_usable"
DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS = "drctl_drill_last_success_timestamp_seconds"
DRILL_LAST_RESULT = "drctl_drill_last_result"
DRILL_DURATION_SECONDS = "drctl_drill_duration_seconds"

RECONCILE_SUCCESS = "success"
RECONCILE_ERROR = "error"
RECONCILE_INVALID_SPEC = "invalid_spec"
# A closed set: a typo in the daemon must not invent a series no dashboard reads.
RECONCILE_RESULTS = (RECONCILE_SUCCESS, RECONCILE_ERROR, RECONCILE_INVALID_SPEC)

# `drctl_actions_total{result}` counts outcomes; `started` is not one (it is
# what `drctl_actions_in_flight` counts), or every action would count twice.
ACTION_RESULTS = tuple(
    kind.value for kind in EventKind if kind not in {EventKind.STARTED, EventKind.ADOPTED}
)

# Buckets, in seconds, sized to what each duration is in DR:
# - one job: a stop or a commit takes seconds, an ASR planned failover a few
#   minutes, a reverse replication up to tens of minutes before its job ends;
ACTION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# - a whole plan: placement (the realised RTO) is minutes to an hour or two
#   with boot groups serialised; convergence adds the reverse replication,
#   a full initial replication after an unplanned failover, so hours;
RECOVERY_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
# - data lost by a failover: 0 for every planned one (its own bucket, so
#   `le="0"` counts them), then up to a few replication intervals (Hyper-V
#   Replica ships every 30 s, 5 or 15 min), an hour when replication lagged;
DATA_LOSS_BUCKETS = (0, 1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
# - one reconcile pass: observe + plan + starts, milliseconds for a few VMs,
#   seconds at 100k VMs, more only when the fabric is slow.
RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class _Snapshot:
    """The per-plan and per-site values one reconcile pass saw; replaced whole, never mutated."""

    plans: tuple[tuple[str, bool, bool], ...] = ()  # (name, placed, converged)
    sites: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class _SpecSnapshot:
    valid: bool
    revision: str | None
    changed_at: float | None


class _VMCollector(Collector):
    """The per-VM families for prometheus_client's registry, from the rows of the last pass.

    `Metrics.exposition` does not use it (`vm_series.VMSeries.pieces` is the
    same text, kept rendered); `Metrics.registry` does, for whoever reads
    values through prometheus_client.
    """

    def __init__(self, series: vm_series.VMSeries) -> None:
        self._series = series

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(f.name, vm_series.HELP[f.name]) for f in vm_series.FAMILIES]

    def collect(self) -> Iterable[Metric]:
        rows = list(self._series.rows())
        for family in vm_series.FAMILIES:
            samples = []
            for r in rows:
                labels = {"plan": r.plan, "vm": r.vm}
                if family.name == VM_INFO:
                    labels |= {
                        "desired_site": r.desired_site,
                        "active_site": r.active_site,
                        "replication": r.replication,
                        "phase": r.phase,
                    }
                    samples.append(Sample(VM_INFO, labels, 1.0))
                elif (value := family.value(r)) is not None:
                    samples.append(Sample(family.name, labels, value))
            metric = GaugeMetricFamily(family.name, vm_series.HELP[family.name])
            metric.samples = samples
            yield metric


class _Nested(Collector):
    """A registry inside another: its collectors' families, yielded at the outer one's collect."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self._registry = registry

    def describe(self) -> Iterable[Metric]:
        return []  # the inner registry has checked its own names

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _StateCollector(Collector):
    """Gauges derived from the latest plan and spec, yielded from snapshots at scrape time."""

    def __init__(self) -> None:
        self.snapshot = _Snapshot()
        self.spec: _SpecSnapshot | None = None  # None until the daemon has read a spec
        # (refused, readable) from the daemon's first look at the revision on.
        self.revision: tuple[bool, bool] | None = None
        # With --require-signed-commits only: whether the newest revision is trusted.
        self.trusted: bool | None = None

    def describe(self) -> Iterable[Metric]:
        # Lets the registry reject a second collector with the same names.
        return [GaugeMetricFamily(name, help_text) for name, help_text in _HELP.items()]

    def collect(self) -> Iterable[Metric]:
        # One read of each reference: the daemon may swap in a new snapshot
        # while this scrape formats the old one.
        snap, spec_snap, looked, trusted = self.snapshot, self.spec, self.revision, self.trusted
        with gcpause.gc_paused():
            yield _family(
                PLAN_PLACED,
                [
                    Sample(PLAN_PLACED, {"plan": name}, float(placed))
                    for name, placed, _ in snap.plans
                ],
            )
            yield _family(
                PLAN_CONVERGED,
                [
                    Sample(PLAN_CONVERGED, {"plan": name}, float(converged))
                    for name, _, converged in snap.plans
                ],
            )
            yield _family(
                SITE_CONNECTED,
                [
                    Sample(SITE_CONNECTED, {"site": name}, float(connected))
                    for name, connected in snap.sites
                ],
            )
            valid, revision, changed = [], [], []
            if spec_snap is not None:
                valid.append(Sample(SPEC_VALID, {}, float(spec_snap.valid)))
                # One series, for the revision in force: the old label value is
                # gone with the old snapshot, so `count(...)` is always 1.
                if spec_snap.revision is not None:
                    revision.append(
                        Sample(SPEC_REVISION_INFO, {"revision": spec_snap.revision}, 1.0)
                    )
                if spec_snap.changed_at is not None:
                    changed.append(
                        Sample(LAST_SPEC_CHANGE_TIMESTAMP_SECONDS, {}, spec_snap.changed_at)
                    )
            yield _family(SPEC_VALID, valid)
            yield _family(SPEC_REVISION_INFO, revision)
            yield _family(LAST_SPEC_CHANGE_TIMESTAMP_SECONDS, changed)
            refused, readable = [], []
            if looked is not None:
                refused.append(Sample(REVISION_REFUSED, {}, float(looked[0])))
                readable.append(Sample(SPEC_REVISION_READABLE, {}, float(looked[1])))
            yield _family(REVISION_REFUSED, refused)
            yield _family(SPEC_REVISION_READABLE, readable)
            signed = [] if trusted is None else [Sample(SPEC_REVISION_TRUSTED, {}, float(trusted))]
            yield _family(SPEC_REVISION_TRUSTED, signed)


_HELP = {
    PLAN_PLACED: "Whether every VM of the plan runs, committed, at its desired site.",
    PLAN_CONVERGED: "Whether every VM of the plan is converged: placed and protected.",
    SITE_CONNECTED: "Whether the fabric reports the site connected.",
    SPEC_VALID: (
        "Whether the newest spec revision is valid (1); if not (0) the last valid "
        "one stays in force."
    ),
    SPEC_REVISION_INFO: "The spec revision in force.",
    LAST_SPEC_CHANGE_TIMESTAMP_SECONDS: "Unix time at which the revision in force was first seen.",
    REVISION_REFUSED: (
        "Whether the newest valid revision is refused (1): it holds no plan, or drops VMs "
        "with a move in flight; the revision in force stays and `drctl status` says why."
    ),
    SPEC_REVISION_READABLE: (
        "Whether the revision of the specs could be read at the last look (1); if not (0), "
        "git cannot read their repository and the revision in force stays."
    ),
    SPEC_REVISION_TRUSTED: (
        "With --require-signed-commits: whether the newest revision comes from commits "
        "git verify-commit accepts (1); if not (0) it is not applied, the revision in force "
        "stays and `drctl status` says who committed what and what to do."
    ),
}


def _family(name: str, samples: list[Sample]) -> Metric:
    # Samples are built directly rather than through add_metric(): at 100k
    # VMs the per-sample zip() and list conversions show in the scrape time.
    family = GaugeMetricFamily(name, _HELP[name])
    family.samples = samples
    return family


class Metrics:
    """The daemon's metrics, in a registry of their own (tests each get a fresh one)."""

    def __init__(self, vm_block: int = vm_series.BLOCK) -> None:
        self._vms = vm_series.VMSeries(vm_block)  # `vm_block` VMs rendered together
        # Every family but the per-VM ones (which `vm_series` keeps rendered),
        # rendered by prometheus_client at each scrape.
        self.others = prometheus_client.CollectorRegistry()
        # Everything, through prometheus_client: what `registry.get_sample_value` reads.
        self.registry = prometheus_client.CollectorRegistry()
        self.registry.register(_VMCollector(self._vms))
        self.registry.register(_Nested(self.others))
        self._state = _StateCollector()
        self.others.register(self._state)
        r = self.others
        self._actions = prometheus_client.Counter(
            ACTIONS_TOTAL,
            "Actions drctl issued, by operation and outcome (succeeded, failed, "
            "refused by the fabric, throttled, deferred).",
            ("operation", "result"),
            registry=r,
        )
        self._action_duration = prometheus_client.Histogram(
            ACTION_DURATION_SECONDS,
            "Duration of the fabric jobs drctl started, start to end.",
            ("operation",),
            buckets=ACTION_BUCKETS,
            registry=r,
        )
        self._in_flight = prometheus_client.Gauge(
            ACTIONS_IN_FLIGHT,
            "Jobs drctl started that have not ended yet.",
            ("operation",),
            registry=r,
        )
        self._reconciles = prometheus_client.Counter(
            RECONCILE_TOTAL, "Reconcile passes, by result.", ("result",), registry=r
        )
        self._reconcile_duration = prometheus_client.Histogram(
            RECONCILE_DURATION_SECONDS,
            "Duration of one reconcile pass.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self._placement = prometheus_client.Histogram(
            PLACEMENT_DURATION_SECONDS,
            "From the moment a revision that moves VMs of the plan "
            "is seen until every VM of the plan is placed: the realised RTO.",
            ("plan",),
            buckets=RECOVERY_BUCKETS,
            registry=r,
        )
        self._convergence = prometheus_client.Histogram(
            CONVERGENCE_DURATION_SECONDS,
            "From the moment a revision that moves VMs of the "
            "plan is seen until the plan is converged (protected again).",
            ("plan",),
            buckets=RECOVERY_BUCKETS,
            registry=r,
        )
        self._leader = prometheus_client.Gauge(
            LEADER,
            "Whether this drctl holds the fabric lock and acts (1), or waits for it (0: "
            "another drctl acts, and this one serves no plan or VM series).",
            registry=r,
        )
        # The etcd lease (`drctl run --lock etcd://...`); absent holder: no series.
        self._leader_info = prometheus_client.Gauge(
            LEADER_INFO,
            "1, naming the replica that holds the etcd lease as this replica last saw it.",
            ("identity",),
            registry=r,
        )
        self._leader_identity: str | None = None
        self._transitions = prometheus_client.Counter(
            LEADER_TRANSITIONS_TOTAL,
            "Times this replica saw the etcd lease pass to a new holder (itself included).",
            registry=r,
        )
        self._renew_failures = prometheus_client.Counter(
            LEASE_RENEW_FAILURES_TOTAL,
            "Renewals of this replica's etcd lease that no etcd member answered: it starts "
            "nothing until one succeeds, and steps down at its deadline.",
            registry=r,
        )
        self._data_loss = prometheus_client.Histogram(
            FAILOVER_DATA_LOSS_SECONDS,
            "Seconds of writes lost, one sample per finished failover (0 for planned ones).",
            ("plan",),
            buckets=DATA_LOSS_BUCKETS,
            registry=r,
        )
        # 1 until the daemon finds otherwise: it says so at once (daemon/health.py).
        self._state_writable = prometheus_client.Gauge(
            STATE_WRITABLE,
            "1 when drctl can write its state dir (journal, status, revision in force); 0 "
            "while a write fails (read-only, full, no permission): it starts nothing then.",
            registry=r,
        )
        self._journal_usable = prometheus_client.Gauge(
            JOURNAL_USABLE,
            "1 when the journal is open and drctl's; 0 while drctl refuses it (damaged, not "
            "drctl's, replaced) or waits for another process's lock on it: it acts on nothing.",
            registry=r,
        )
        self.set_state_dir(writable=True, journal_usable=True)
        # A plan's drill series appear with its first ended drill (from the journal).
        self._drill_success = prometheus_client.Gauge(
            DRILL_LAST_SUCCESS_TIMESTAMP_SECONDS,
            "When the plan's last drill that passed ended (Unix time).",
            ("plan",),
            registry=r,
        )
        self._drill_result = prometheus_client.Gauge(
            DRILL_LAST_RESULT,
            "The result of the plan's last drill: 1 passed, 0 failed or preempted.",
            ("plan",),
            registry=r,
        )
        self._drill_duration = prometheus_client.Gauge(
            DRILL_DURATION_SECONDS,
            "How long the plan's last drill took, from its first TestFailover to its last cleanup.",
            ("plan",),
            registry=r,
        )
        # Children exist from the start at 0, so that the first failure is an
        # increase() that rules and dashboards see, not a series appearing.
        for op in Operation:
            self._in_flight.labels(op.value)
            for result in ACTION_RESULTS:
                self._actions.labels(op.value, result)
        for result in RECONCILE_RESULTS:
            self._reconciles.labels(result)
        # Job id -> operation of the jobs counted in flight (started, or adopted
        # after a restart), so that no job's end is subtracted twice or unseen.
        self._in_flight_jobs: dict[str, str] = {}
        self._known_plans: set[str] = set()

    # --- state, after each pass ------------------------------------------------

    def update_from_plan(self, built: plan.Plan, observed: state.Observed) -> None:
        """Replace the per-VM, per-plan and per-site series with what this pass saw."""
        with gcpause.gc_paused():
            self._vms.update(built)
        snapshot = _Snapshot(
            plans=self._vms.plans,
            sites=tuple((s.name, s.connected) for s in observed.sites.values()),
        )
        self._state.snapshot = snapshot
        for name, _, _ in snapshot.plans:
            if name not in self._known_plans:
                # A plan's histograms exist (empty) from the first pass that sees it.
                self._known_plans.add(name)
                for histogram in (self._placement, self._convergence, self._data_loss):
                    histogram.labels(name)

    def set_drills(self, records: Iterable[plan.DrillRecord]) -> None:
        """The drill series from the journal's drills (oldest first): each plan's last ended."""
        for record in records:
            if record.ended_at is None:
                continue
            passed = record.result == "passed"
            self._drill_result.labels(record.plan).set(1 if passed else 0)
            seconds = (record.ended_at - record.started_at).total_seconds()
            self._drill_duration.labels(record.plan).set(seconds)
            if passed:
                self._drill_success.labels(record.plan).set(record.ended_at.timestamp())

    def set_spec(self, valid: bool, revision: str | None, changed_at: float | None) -> None:
        """Whether the newest spec is valid, the revision in force, and when it was first seen.

        `changed_at` is a Unix timestamp; None (like `revision` None) when no
        revision is in force yet, and the series is then absent, not 0.
        """
        self._state.spec = _SpecSnapshot(valid, revision, changed_at)

    def set_revision(self, *, refused: bool, readable: bool) -> None:
        """Whether the newest valid revision is refused, and whether git could read the revision."""
        self._state.revision = (refused, readable)

    def set_trusted(self, trusted: bool) -> None:
        """Whether the newest revision is signed as `--require-signed-commits` requires."""
        self._state.trusted = trusted

    def set_leader(self, leader: bool) -> None:
        """Whether this daemon holds the fabric lock (1) or waits for it (0, the start)."""
        self._leader.set(1.0 if leader else 0.0)

    def set_leader_seen(self, identity: str | None, *, transition: bool) -> None:
        """The etcd lease's holder as this replica saw it last; `transition`: a new one."""
        if identity != self._leader_identity:
            if self._leader_identity is not None:
                self._leader_info.remove(self._leader_identity)
            if identity is not None:
                self._leader_info.labels(identity).set(1)
            self._leader_identity = identity
        if transition:
            self._transitions.inc()

    def count_renew_failure(self) -> None:
        self._renew_failures.inc()

    def set_state_dir(self, *, writable: bool, journal_usable: bool) -> None:
        """Whether the state dir takes writes, and whether the journal can be used."""
        self._state_writable.set(1 if writable else 0)
        self._journal_usable.set(1 if journal_usable else 0)

    # --- what happened -----------------------------------------------------------

    def record_event(self, event: execute.Event) -> None:
        """Count an executor event; time and un-count a job when it ends."""
        op = event.operation.value
        if event.kind in {EventKind.STARTED, EventKind.ADOPTED}:
            if event.job_id is not None and event.job_id not in self._in_flight_jobs:
                self._in_flight_jobs[event.job_id] = op
                self._in_flight.labels(op).inc()
            return
        self._actions.labels(op, event.kind.value).inc()
        if event.kind not in (EventKind.SUCCEEDED, EventKind.FAILED):
            return  # refused, throttled or deferred: no job was started
        started = self._in_flight_jobs.pop(event.job_id, None) if event.job_id else None
        if started is not None:
            self._in_flight.labels(started).dec()
        if event.seconds is not None:
            self._action_duration.labels(op).observe(event.seconds)
        if event.kind is EventKind.SUCCEEDED and event.operation in state.FAILOVERS:
            # A planned failover ships everything before it starts the replica.
            loss = 0.0 if event.operation is Operation.PLANNED_FAILOVER else event.data_loss_seconds
            # An unplanned failover whose fabric did not say what it lost gets
            # no sample: a made-up 0 would hide a loss.
            if loss is not None:
                self._data_loss.labels(event.plan).observe(loss)

    def record_reconcile(self, result: str, seconds: float) -> None:
        """Count one reconcile pass (`RECONCILE_RESULTS`) and how long it took."""
        if result not in RECONCILE_RESULTS:
            raise ValueError(f"reconcile result must be one of {RECONCILE_RESULTS}, not {result!r}")
        self._reconciles.labels(result).inc()
        self._reconcile_duration.observe(seconds)

    def observe_placement(self, plan_name: str, seconds: float) -> None:
        """A moving plan is placed `seconds` after its revision was seen (its RTO)."""
        self._placement.labels(plan_name).observe(seconds)

    def observe_convergence(self, plan_name: str, seconds: float) -> None:
        """A moving plan is converged (protected again) `seconds` after its revision was seen."""
        self._convergence.labels(plan_name).observe(seconds)

    # --- exposition ----------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text a Prometheus scrape of /metrics gets (text format 0.0.4)."""
        return b"".join(self.exposition_pieces())

    def exposition_pieces(self) -> list[bytes]:
        """`exposition` in the pieces the endpoint writes one after the other.

        The per-VM families as `vm_series` keeps them rendered (thousands of
        pieces at 100k VMs, none copied), then the rest, a few hundred
        series, rendered by prometheus_client.
        """
        pieces = list(self._vms.pieces())
        pieces.append(prometheus_client.generate_latest(self.others))
        return pieces

    def serve(self, host: str, port: int) -> endpoint.Endpoint:
        """Serve /metrics from a thread of its own; port 0 picks a free one (`.port`).

        Bounded in connections and time, off the reconcile path (engine/endpoint.py);
        stop it with `.close()`. OSError when the address cannot be bound.
        """
        # One format whatever the Accept header says, so that every scrape can
        # share one exposition (the text format; Prometheus reads it).
        return endpoint.Endpoint(
            host,
            port,
            self.exposition_pieces,
            prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4,
        )
