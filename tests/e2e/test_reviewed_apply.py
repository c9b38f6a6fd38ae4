"""What a reviewer approves is what runs (issue 16 section 2): the plan's summary, a saved plan
that `drctl apply --plan` executes exactly or refuses, `--only`, and the question at a terminal
before an unplanned failover. Real `drctl` processes on a real SQLite fabric; a real
pseudo-terminal for the question.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from e2e import harness
from e2e.harness import three_tier
from e2e.test_apply import Drctl

from reconciler.cli import saved_plan
from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import scope as scopes

pytestmark = pytest.mark.e2e


@pytest.fixture
def drctl(tmp_path: Path) -> Drctl:
    return Drctl(tmp_path)


def test_plan_opens_with_a_summary_a_reviewer_can_approve(drctl: Drctl) -> None:
    drctl.want("rtm")
    text = drctl.run("plan", str(drctl.specs)).stdout
    head = text.splitlines()[:3]
    assert head[0].startswith("plan of revision ")
    assert head[1].startswith(
        "  finance: 5 VMs move ams->rtm, planned, no data loss; estimated critical path "
    )
    shown = json.loads(drctl.run("plan", str(drctl.specs), "--output", "json").stdout)
    assert shown["summary"] == [head[1].strip()]
    drctl.want("ams")
    assert drctl.run("plan", str(drctl.specs)).stdout.splitlines()[1] == (
        "  finance: converged (5 VMs), nothing to do"
    )


def test_a_saved_plan_runs_exactly_and_a_stale_one_starts_nothing(drctl: Drctl) -> None:
    drctl.want("rtm")
    saved = drctl.specs.parent / "reviewed.plan"
    made = drctl.run("plan", str(drctl.specs), "--out", str(saved))
    assert f"saved to {saved}: drctl apply {drctl.specs} --plan {saved}" in made.stderr
    # The specs change after the review: the saved plan is stale, nothing starts.
    (drctl.specs / "finance.yaml").write_text(
        three_tier("rtm").replace("maxParallel: 10", "maxParallel: 5")
    )
    refused = drctl.apply("--plan", str(saved))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"drctl: the plan {saved} is stale, nothing was started: the specs are at " in (
        refused.stderr
    )
    assert f"run drctl plan {drctl.specs} --out {saved} again and review it" in refused.stderr
    assert drctl.jobs() == []
    # Back to the reviewed specs, but the fabric changed (an operator stopped web01).
    drctl.want("rtm")
    drctl.run("fabric", "stop", "web01", "ams")
    refused = drctl.apply("--plan", str(saved))
    assert refused.returncode == 2
    assert "finance/web01: the fabric reports active at ams, replication ams->rtm, Protected" in (
        refused.stderr
    )
    assert "running at none now; the plan saw active at ams" in refused.stderr
    assert [j["operation"] for j in drctl.jobs()] == ["StopVM"]  # the operator's only
    # Reviewed again, it runs exactly: to rtm, converged.
    drctl.run("plan", str(drctl.specs), "--out", str(saved))
    done = drctl.apply("--plan", str(saved))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "converged: 5 VMs at their desired site and protected" in done.stdout


@pytest.mark.parametrize("damaged", ["{}", "not json", '{"format": "drctl-plan/v1"}'])
def test_a_file_that_is_no_saved_plan_is_exit_2(drctl: Drctl, damaged: str) -> None:
    path = drctl.specs.parent / "x.plan"
    path.write_text(damaged)
    done = drctl.apply("--plan", str(path))
    assert done.returncode == 2
    assert str(path) in done.stderr
    assert drctl.jobs() == []


def test_only_one_vm_keeps_the_plans_order_and_says_what_it_waits_for(drctl: Drctl) -> None:
    drctl.want("rtm")
    done = drctl.apply("--only", "finance/sql01")
    assert done.returncode == 1, done.stdout + done.stderr
    # sql01 fails over only after its dependents stopped: they are outside the scope.
    assert drctl.jobs() == []
    assert "  finance/sql01: " in done.stderr
    assert "finance/web01: held: StopVM of finance/web01 would move web01, outside --only" in (
        done.stderr
    )
    done = drctl.apply("--only", "finance")
    assert done.returncode == 0, done.stdout + done.stderr
    for bad, said in [
        ("nope", "--only nope: no plan 'nope' in the specs (plans: finance)"),
        ("finance/nope", "--only finance/nope: plan 'finance' has no VM 'nope'"),
    ]:
        refused = drctl.apply("--only", bad)
        assert (refused.returncode, said in refused.stderr) == (2, True), refused.stderr


def test_a_saved_plan_holds_an_operation_it_did_not_show() -> None:
    """A planned move turned unplanned (the source went dark) is held, never started."""
    saved = saved_plan.Saved(
        Path("p.plan"),
        "abc",
        "specs",
        {"finance/sql01": "x"},
        {"finance/sql01": "seen"},
        {"finance/sql01": frozenset({Operation.STOP_VM, Operation.PLANNED_FAILOVER})},
    )
    scope = saved.scope()
    unplanned = plan.Action("finance", "sql01", Operation.UNPLANNED_FAILOVER, "rtm")
    why = scope.holds(unplanned)
    assert why is not None
    assert why.startswith("the saved plan did not foresee UnplannedFailover for finance/sql01")
    assert scope.holds(plan.Action("finance", "sql01", Operation.PLANNED_FAILOVER, "rtm")) is None
    other = plan.Action("finance", "web01", Operation.STOP_VM, None)
    assert "which the saved plan p.plan does not act on" in (scope.holds(other) or "")
    whole = plan.Action(
        "finance", "sql01", Operation.PLANNED_FAILOVER, "rtm", plan_groups=(("sql01", "web01"),)
    )
    assert "would move web01" in (
        scopes.Scope(vms=frozenset({("finance", "sql01")})).holds(whole) or ""
    )


def at_a_terminal(args: list[str], answer: str | None, timeout: float = 60) -> tuple[int, str]:
    """Run drctl on a real pseudo-terminal; type `answer` at its question (None: never asked)."""
    if answer is None:
        return harness.on_a_terminal(args, [], timeout)
    question = (
        lambda seen: "Type yes to go on:" in seen,
        lambda _pid, fd: os.write(fd, answer.encode() + b"\n"),
    )
    return harness.on_a_terminal(args, [question], timeout)


def outage(drctl: Drctl) -> list[str]:
    """ams is lost; finance consents to lose writes from it: an unplanned failover to rtm."""
    drctl.run("fabric", "site-down", "ams")
    text = three_tier("rtm").replace("policy: {", "policy: {allowDataLoss: true, ", 1)
    (drctl.specs / "finance.yaml").write_text(text)
    # ams stays down: the reverse replication waits for it, so apply ends on its timeout.
    return [
        "apply",
        str(drctl.specs),
        "--poll-interval",
        "0.05",
        "--timeout",
        "3",
        "--state-dir",
        str(drctl.state),
    ]


def test_an_unplanned_failover_at_a_terminal_waits_for_yes(drctl: Drctl) -> None:
    args = outage(drctl)
    code, seen = at_a_terminal(args, "no")
    assert "plan finance: unplanned failover of " in seen
    assert "the writes ams has not replicated yet are lost." in seen
    assert code == 1, seen
    assert "not confirmed at the terminal (answer yes, or run drctl apply --yes)" in seen
    assert [j for j in drctl.jobs() if j["operation"] == "UnplannedFailover"] == []
    code, seen = at_a_terminal(args, "yes")
    assert seen.count("Type yes to go on") == 1  # once for the plan, not per VM
    assert {j["operation"] for j in drctl.jobs()} >= {"UnplannedFailover"}
    assert "finance/sql01 UnplannedFailover -> rtm started" in seen


def test_yes_and_a_pipe_are_never_asked(drctl: Drctl) -> None:
    args = outage(drctl)
    code, seen = at_a_terminal([*args, "--yes"], None)
    assert "Type yes to go on" not in seen
    assert "finance/sql01 UnplannedFailover -> rtm started" in seen
    piped = subprocess.run(
        [sys.executable, "-m", "reconciler", *args], capture_output=True, text=True, check=False
    )
    assert "Type yes" not in piped.stdout
    assert code == piped.returncode == 1  # ams stays down: not converged in 3 s
