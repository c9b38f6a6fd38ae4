"""/metrics kept rendered VM by VM: after any sequence of passes, what prometheus_client renders.

A scrape of `Metrics.exposition` joins text kept from earlier passes; these
tests check, as Prometheus's own parser reads both, that it always equals
prometheus_client's `generate_latest` of the same state made from scratch:
after random sequences of plans in which VMs appear, change, move between
plans and disappear, with NaN values and label values that need escaping,
planned anew or handed back unchanged as an incremental planner does.
"""

from __future__ import annotations

import dataclasses
import math

import prometheus_client
from builders import NOW, desired, job, observed, vm, want
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from reconciler.core import plan
from reconciler.core.desired import DesiredVM
from reconciler.core.state import Observed, Operation, ReplicationState
from reconciler.engine import metrics, vm_series
from reconciler.engine.metrics import Metrics

# Names a spec could hold, and some only a fabric's report could: every one
# the text format must escape (backslash, double quote, newline).
NAMES = ("web01", "db01", "app01", 'quo"te', "back\\slash", "new\nline", "ünï", "x")
PLANS = ("finance", "hr", 'p"1')

# The families these tests follow: every per-VM, per-plan and per-site one.
FOLLOWED = {f.name for f in vm_series.FAMILIES} | {
    metrics.PLAN_PLACED,
    metrics.PLAN_CONVERGED,
    metrics.SITE_CONNECTED,
}

Parsed = dict[str, tuple[str, str, list[tuple[str, tuple[tuple[str, str], ...], str]]]]


def parse(text: bytes) -> Parsed:
    """Name -> (help, type, sorted samples) of the followed families, as Prometheus reads them.

    Values are compared as text of their float, so that NaN equals NaN.
    """
    out: Parsed = {}
    for family in text_string_to_metric_families(text.decode()):
        if family.name in FOLLOWED:
            samples = sorted(
                (s.name, tuple(sorted(s.labels.items())), repr(float(s.value)))
                for s in family.samples
            )
            out[family.name] = (family.documentation, family.type, samples)
    return out


def reference(built: plan.Plan, seen: Observed) -> bytes:
    """What prometheus_client renders for this pass alone, from a Metrics that saw nothing else."""
    fresh = Metrics()
    fresh.update_from_plan(built, seen)
    return prometheus_client.generate_latest(fresh.registry)


@st.composite
def passes(draw: st.DrawFn) -> tuple[tuple[DesiredVM, ...], Observed, bool]:
    """One pass: the VMs the spec holds, what the fabric reports, whether the plan is rebuilt."""
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    wanted, seen = [], []
    for name in names:
        site = draw(st.sampled_from(("ams", "rtm")))
        replication = draw(st.sampled_from(("auto", None)))
        wanted.append(want(name, site, replication=replication, plan=draw(st.sampled_from(PLANS))))
        kind = draw(st.sampled_from(("rest", "missing", "unknown", "moving", "lagging", "off")))
        if kind == "missing":
            continue
        active = draw(st.sampled_from(("ams", "rtm")))
        if kind == "unknown":  # no copy known to run, a site's power Unknown: NaN
            seen.append(vm(name, active, running=(), unknown=("ams",)))
        elif kind == "moving":
            seen.append(vm(name, active, job=job(name, Operation.PLANNED_FAILOVER, age=30.0)))
        elif kind == "lagging":
            age = draw(st.floats(0, 1e6, allow_nan=False))
            rstate = draw(st.sampled_from(list(ReplicationState)))
            seen.append(vm(name, active, last_sync_age=age, rstate=rstate))
        elif kind == "off":
            seen.append(vm(name, active, running=()))
        else:
            seen.append(vm(name, active))
    down = draw(st.sampled_from(((), ("rtm",))))
    return tuple(wanted), observed(*seen, down=down), draw(st.booleans())


def handed_back(built: plan.Plan, last: plan.Plan | None) -> plan.Plan:
    """`built` with each VMPlan equal to last pass's replaced by that very object.

    What an incremental planner hands the metrics: the same VMPlan for every
    VM it did not plan again.
    """
    if last is None:
        return built
    before = {(vp.desired.plan, vp.name): vp for vp in last.vms}
    vms = tuple(
        old if (old := before.get((vp.desired.plan, vp.name))) == vp else vp for vp in built.vms
    )
    return dataclasses.replace(built, vms=vms)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(passes(), min_size=1, max_size=8), block=st.sampled_from((1, 2, 3, 1024)))
def test_the_exposition_after_any_passes_is_what_prometheus_client_renders_from_scratch(
    steps: list[tuple[tuple[DesiredVM, ...], Observed, bool]], block: int
) -> None:
    exported = Metrics(vm_block=block)
    last: plan.Plan | None = None
    for wanted, seen, rebuilt in steps:
        built = plan.build_plan(desired(*wanted), seen, NOW) if wanted else plan.Plan((), (), ())
        if not rebuilt:
            built = handed_back(built, last)
        exported.update_from_plan(built, seen)
        # Scraped after some passes only: text kept across several passes must stay right.
        if rebuilt or len(wanted) % 2:
            assert parse(exported.exposition()) == parse(reference(built, seen))
        last = built
    assert last is not None
    assert parse(exported.exposition()) == parse(reference(last, seen))


def test_a_vm_that_leaves_the_plan_takes_every_series_of_its_own_with_it() -> None:
    exported = Metrics(vm_block=2)
    d = desired(*(want(n) for n in ("a1", "a2", "a3", "a4", "a5")))
    o = observed(*(vm(n) for n in ("a1", "a2", "a3", "a4", "a5")))
    exported.update_from_plan(plan.build_plan(d, o, NOW), o)
    exported.exposition()
    fewer = desired(want("a1"), want("a5"))
    exported.update_from_plan(plan.build_plan(fewer, o, NOW), o)
    text = exported.exposition().decode()
    for gone in ("a2", "a3", "a4"):
        assert f'vm="{gone}"' not in text
    assert text.count('vm="a1"') == text.count('vm="a5"') == len(vm_series.FAMILIES)


def test_label_values_are_escaped_as_the_text_format_requires() -> None:
    name = 'a"b\\c\nd'
    d, o = desired(want(name, plan='q"\\')), observed(vm(name))
    exported = Metrics()
    exported.update_from_plan(plan.build_plan(d, o, NOW), o)
    text = exported.exposition()
    assert b'drctl_vm_converged{plan="q\\"\\\\",vm="a\\"b\\\\c\\nd"} 1.0\n' in text
    [converged] = [
        f for f in text_string_to_metric_families(text.decode()) if f.name == "drctl_vm_converged"
    ]
    assert [s.labels for s in converged.samples] == [{"plan": 'q"\\', "vm": name}]


def test_a_vm_whose_power_is_unknown_stays_nan_pass_after_pass() -> None:
    d = desired(want("app01"))
    o = observed(vm("app01", running=(), unknown=("ams",)))
    exported = Metrics()
    for _ in range(3):
        exported.update_from_plan(plan.build_plan(d, o, NOW), o)
        running = [
            s.value
            for f in text_string_to_metric_families(exported.exposition().decode())
            for s in f.samples
            if s.name == "drctl_vm_running"
        ]
        assert len(running) == 1 and math.isnan(running[0])


def test_a_change_of_one_vm_renders_again_only_its_block() -> None:
    """Kept text is reused: the blocks of VMs that did not change are the same bytes objects."""
    names = [f"vm{i:03d}" for i in range(10)]
    d = desired(*(want(n) for n in names))
    o = observed(*(vm(n) for n in names))
    exported = Metrics(vm_block=4)
    exported.update_from_plan(plan.build_plan(d, o, NOW), o)
    before = exported.exposition_pieces()
    lagging = observed(*(vm(n, last_sync_age=900.0 if n == "vm009" else 10.0) for n in names))
    exported.update_from_plan(plan.build_plan(d, lagging, NOW), lagging)
    after = exported.exposition_pieces()
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a is not b]
    # The last block's last-sync text, and the tail rendered by prometheus_client.
    assert len(changed) == 2
    assert b'vm="vm009"' in after[changed[0]] and b"900" not in before[changed[0]]


def test_a_replica_whose_observed_vm_vanishes_loses_its_replication_series() -> None:
    d = desired(want("db01"))
    o = observed(vm("db01"))
    exported = Metrics()
    exported.update_from_plan(plan.build_plan(d, o, NOW), o)
    assert b"drctl_replication_last_sync_timestamp_seconds{" in exported.exposition()
    gone: Observed = observed()
    exported.update_from_plan(plan.build_plan(d, gone, NOW), gone)
    text = exported.exposition()
    assert b"drctl_replication_last_sync_timestamp_seconds{" not in text
    assert b"drctl_replication_interval_seconds{" not in text
    assert parse(text) == parse(reference(plan.build_plan(d, gone, NOW), gone))
