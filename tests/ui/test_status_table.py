"""`drctl status`: where each copy runs, what each VM waits for, the next step an operator can
take, and each site's connection; the JSON keeps every key it had and adds these."""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import timedelta

from builders import NOW, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import Group
from reconciler.core.plan import Phase, Provenance
from reconciler.core.state import Observed, Operation
from reconciler.ui import report, status_table

MOVED_AT = NOW - timedelta(minutes=10)


def _row(text: str, name: str) -> dict[str, str]:
    """The row of VM `name` as a dict of column -> cell, read by the header's offsets."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("PLAN "))
    names = [*status_table.HEADER, "REASON"]
    starts = [header.index(n) for n in names]
    line = next(line for line in lines if line.split()[1:2] == [name])
    ends = [*starts[1:], None]
    return {n: line[s:e].strip() for n, s, e in zip(names, starts, ends, strict=True)}


def _status(built: plan.Plan, sites: tuple[status_table.SiteState, ...] = ()) -> str:
    out = io.StringIO()
    report.print_status(built, "abc123", out, sites=sites)
    return out.getvalue()


def _blocked() -> plan.Plan:
    """sql01 Blocked after 3 failed failovers, web01 of its plan with it; hr's app01 moved by
    hand."""
    wanted = desired(want("sql01", "rtm"), want("app01", "ams", plan="hr"), want("web01", "rtm"))
    moved = dataclasses.replace(
        vm("app01", "rtm", allowed=frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM})),
        last_failover_job="job-000007",
        last_failover_at=MOVED_AT,
    )
    seen = observed(vm("sql01", running=()), moved, vm("web01", unknown=("rtm",)))
    attempts = {
        ("sql01", Operation.PLANNED_FAILOVER): plan.Attempts(3, "disk busy", NOW),
    }
    return plan.build_plan(wanted, seen, NOW, attempts, provenance=Provenance({}, MOVED_AT))


def test_each_vm_says_where_it_runs_what_it_waits_for_and_the_next_step() -> None:
    text = _status(_blocked())
    sql01, app01, web01 = (_row(text, n) for n in ("sql01", "app01", "web01"))
    assert (sql01["PHASE"], sql01["RUNNING"], sql01["WAITING FOR"]) == ("Blocked", "-", "a person")
    assert sql01["NEXT STEP"] == "fix the cause in the fabric, then drctl retry --vm sql01"
    assert (app01["PHASE"], app01["RUNNING"]) == ("Held", "rtm")
    assert app01["NEXT STEP"] == "commit `activeSite: rtm`"
    assert web01["RUNNING"] == "ams,rtm?"  # its power at rtm unknown: it may run there
    assert web01["NEXT STEP"] == "unblock sql01 first (see its row)"
    assert web01["REASON"]  # the reason stays last, whole


def test_a_stuck_job_names_the_job_to_look_at_and_a_manual_commit_what_to_commit() -> None:
    built = _blocked()
    sql01 = next(vp for vp in built.vms if vp.name == "sql01")
    assert sql01.observed is not None
    running = dataclasses.replace(sql01.observed, job=job("sql01", job_id="job-000042"))
    stuck = dataclasses.replace(sql01, phase=Phase.STUCK, observed=running, reason="past 30 min")
    assert status_table.next_step(stuck) == (
        "look at job job-000042 in the fabric (followed, never cancelled)"
    )
    manual = dataclasses.replace(
        sql01,
        phase=Phase.COMMIT_PENDING,
        reason="failed over to rtm; commit `commitApproved: job-000042` on the VM or the plan",
    )
    assert status_table.next_step(manual) == "commit `commitApproved: job-000042`"
    converged = next(vp for vp in built.vms if vp.name == "sql01")
    assert status_table.next_step(dataclasses.replace(converged, phase=Phase.STOPPING)) == "-"


def test_a_vm_whose_action_waits_for_others_names_them() -> None:
    """sql01 (off) fails over once web01, which depends on it, no longer runs at the source."""
    groups = (Group("db", (), ("sql01",)), Group("web", ("db",), ("web01",)))
    wanted = desired(
        want("sql01", "rtm", group="db"), want("web01", "rtm", group="web"), groups=groups
    )
    built = plan.build_plan(wanted, observed(vm("sql01", running=()), vm("web01")), NOW)
    assert _row(_status(built), "sql01")["WAITING FOR"] == "web01"
    sql01 = next(vp for vp in built.vms if vp.name == "sql01")
    assert status_table.vm_json(sql01)["action"]["waitingFor"] == ["web01"]
    assert status_table.waits_text(sql01) == "PlannedFailover -> rtm after web01"


def test_each_sites_connection_is_said_and_unknown_when_its_fabric_was_not_observed() -> None:
    wanted = desired(want("sql01"))
    sites = status_table.site_states(
        {
            "embedded": observed(vm("sql01"), down=("rtm",)),
            "east": Observed({}, {}, None, unreachable="refused"),
        },
        dataclasses.replace(
            wanted,
            plans=(*wanted.plans, dataclasses.replace(wanted.plans[0], name="pay", fabric="east")),
        ),
    )
    assert [(s.fabric, s.site, s.state) for s in sites] == [
        ("east", "ams", "unknown"),
        ("east", "rtm", "unknown"),
        ("embedded", "ams", "connected"),
        ("embedded", "rtm", "disconnected"),
    ]
    text = _status(plan.build_plan(wanted, observed(vm("sql01")), NOW), sites)
    assert "sites of east: ams unknown, rtm unknown" in text
    assert "sites of embedded: ams connected, rtm disconnected" in text


def test_status_json_adds_to_each_vm_and_keeps_every_key_in_its_place() -> None:
    built = _blocked()
    document = report.status_json(built, "abc123", sites=())
    sql01 = next(v for v in document["vms"] if v["name"] == "sql01")
    before = ["plan", "name", "desired", "observed", "converged", "placed", "protected"]
    assert list(sql01)[: len(before) + 2] == [*before, "phase", "reason"]
    assert sql01["nextStep"] == "fix the cause in the fabric, then drctl retry --vm sql01"
    assert (sql01["waitsFor"], sql01["runningAt"]) == ("person", {"known": [], "maybe": []})
    web01 = next(v for v in document["vms"] if v["name"] == "web01")
    assert web01["runningAt"] == {"known": ["ams"], "maybe": ["rtm"]}
    assert list(document)[-1] == "sites"
    json.dumps(document)  # all of it JSON
