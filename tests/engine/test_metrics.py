"""What drctl's /metrics tells a Prometheus: series, labels and values, and that they lint.

Each test builds a real Plan (`plan.build_plan` on constructed specs and
observations, or plan+execute on the simulated fabric) and asserts on the
exposition text a scrape returns. The promtool tests run the real binary
from the Debian package `prometheus`; they fail, never skip, without it.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import tempfile
import urllib.request
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from builders import NOW, desired, inventory, inventory_vm, job, observed, vm, want
from prometheus_client.parser import text_string_to_metric_families

from reconciler.core import plan
from reconciler.core.desired import DesiredState
from reconciler.core.state import Observed, Operation, ProtectionState, ReplicationState
from reconciler.engine import execute, journal
from reconciler.engine.execute import Event, EventKind
from reconciler.engine.metrics import Metrics
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

OP = Operation
RULES_TEST = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "drctl-rules.test.yaml"

Labels = tuple[tuple[str, str], ...]


def lbl(**labels: str) -> Labels:
    return tuple(sorted(labels.items()))


def scrape(metrics: Metrics) -> dict[str, dict[Labels, float]]:
    """Every sample of the exposition, parsed as Prometheus would: name -> labels -> value."""
    series: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            series[sample.name][lbl(**sample.labels)] = sample.value
    return series


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: install the Debian package 'prometheus' "
            "(apt-get install -y prometheus); this test does not skip without it"
        )
    return path


# --- constructed specs and observations ---------------------------------------------


def updated(d: DesiredState, o: Observed) -> Metrics:
    metrics = Metrics()
    metrics.update_from_plan(plan.build_plan(d, o, NOW), o)
    return metrics


def event(
    kind: EventKind,
    vm_name: str,
    operation: Operation,
    job_id: str | None = "job-1",
    *,
    seconds: float | None = None,
    error: str | None = None,
    data_loss_seconds: float | None = None,
) -> Event:
    return Event(
        kind, "finance", vm_name, operation, "rtm", NOW, job_id, seconds, error, data_loss_seconds
    )


# --- per-VM, per-plan and per-site series -----------------------------------------


def test_vm_series_show_each_vms_convergence_block_and_whereabouts() -> None:
    """sql01 converged; web01 moving to rtm (stopped, failover next); app01 not in the fabric."""
    metrics = updated(
        desired(want("sql01"), want("web01", "rtm"), want("app01")),
        observed(vm("sql01"), vm("web01", running=())),
    )
    text = metrics.exposition().decode()
    assert 'drctl_vm_converged{plan="finance",vm="sql01"} 1.0\n' in text
    got = scrape(metrics)
    assert got["drctl_vm_converged"] == {
        lbl(plan="finance", vm="sql01"): 1.0,
        lbl(plan="finance", vm="web01"): 0.0,
        lbl(plan="finance", vm="app01"): 0.0,
    }
    assert got["drctl_vm_blocked"] == {
        lbl(plan="finance", vm="sql01"): 0.0,
        lbl(plan="finance", vm="web01"): 0.0,
        lbl(plan="finance", vm="app01"): 1.0,
    }
    assert got["drctl_vm_info"] == {
        lbl(
            plan="finance",
            vm="sql01",
            desired_site="ams",
            active_site="ams",
            replication="ams->rtm",
            phase="Converged",
        ): 1.0,
        lbl(
            plan="finance",
            vm="web01",
            desired_site="rtm",
            active_site="ams",
            replication="ams->rtm",
            phase="FailingOver",
        ): 1.0,
        lbl(
            plan="finance",
            vm="app01",
            desired_site="ams",
            active_site="",
            replication="",
            phase="Blocked",
        ): 1.0,
    }


def test_plan_series_say_whether_every_vm_is_placed_and_converged() -> None:
    """finance: placed but sql01 still syncing; hr: converged; ops: web01 not yet moved."""
    metrics = updated(
        desired(
            want("sql01"),
            want("app01"),
            want("hr01", plan="hr"),
            want("web01", "rtm", plan="ops"),
        ),
        observed(
            vm("sql01", rstate=ReplicationState.INITIAL_SYNC), vm("app01"), vm("hr01"), vm("web01")
        ),
    )
    got = scrape(metrics)
    assert got["drctl_plan_placed"] == {
        lbl(plan="finance"): 1.0,
        lbl(plan="hr"): 1.0,
        lbl(plan="ops"): 0.0,
    }
    assert got["drctl_plan_converged"] == {
        lbl(plan="finance"): 0.0,
        lbl(plan="hr"): 1.0,
        lbl(plan="ops"): 0.0,
    }


def test_site_connected_follows_the_fabric() -> None:
    metrics = updated(desired(want("sql01")), observed(vm("sql01"), down=("rtm",)))
    assert scrape(metrics)["drctl_site_connected"] == {lbl(site="ams"): 1.0, lbl(site="rtm"): 0.0}


def test_a_vm_removed_from_the_spec_leaves_the_exposition() -> None:
    o = observed(vm("sql01"), vm("web01"))
    metrics = updated(desired(want("sql01"), want("web01")), o)
    metrics.update_from_plan(plan.build_plan(desired(want("sql01")), o, NOW), o)
    text = metrics.exposition().decode()
    assert 'vm="sql01"' in text
    assert 'vm="web01"' not in text


def test_info_series_follows_the_phase_without_leaving_the_old_one_behind() -> None:
    d = desired(want("web01", "rtm"))
    before = observed(vm("web01"))
    metrics = updated(d, before)
    assert [dict(labels)["phase"] for labels in scrape(metrics)["drctl_vm_info"]] == ["Stopping"]
    during = observed(vm("web01", running=(), job=job("web01", progress=0.4, age=30.0)))
    metrics.update_from_plan(plan.build_plan(d, during, NOW), during)
    info = scrape(metrics)["drctl_vm_info"]
    assert [dict(labels)["phase"] for labels in info] == ["FailingOver"]


# --- replication series: the RPO ------------------------------------------------------


def test_replication_series_while_replicating_as_the_spec_says() -> None:
    metrics = updated(desired(want("sql01")), observed(vm("sql01", last_sync_age=12.0)))
    got = scrape(metrics)
    last_sync = (NOW - timedelta(seconds=12)).timestamp()
    assert got["drctl_replication_last_sync_timestamp_seconds"] == {
        lbl(plan="finance", vm="sql01"): last_sync
    }
    assert got["drctl_replication_interval_seconds"] == {lbl(plan="finance", vm="sql01"): 30.0}


def test_no_replication_series_with_replication_off() -> None:
    """Off in the spec and in the fabric, or off in the spec while the fabric still replicates."""
    metrics = updated(
        desired(want("sql01", replication=None), want("web01", replication=None)),
        observed(
            vm("sql01", replication=None, protection=ProtectionState.UNPROTECTED), vm("web01")
        ),
    )
    got = scrape(metrics)
    assert got["drctl_vm_converged"][lbl(plan="finance", vm="sql01")] == 1.0
    assert "drctl_replication_last_sync_timestamp_seconds" not in got
    assert "drctl_replication_interval_seconds" not in got


def test_no_replication_series_during_a_failover() -> None:
    """Mid-failover the last sync ages by design; an RPO alert on it must not fire."""
    metrics = updated(
        desired(want("sql01", "rtm"), want("app01")),
        observed(
            vm("sql01", running=(), job=job("sql01", progress=0.4, age=30.0), last_sync_age=600.0),
            vm("app01"),
        ),
    )
    got = scrape(metrics)
    assert set(got["drctl_replication_last_sync_timestamp_seconds"]) == {
        lbl(plan="finance", vm="app01")
    }
    assert set(got["drctl_replication_interval_seconds"]) == {lbl(plan="finance", vm="app01")}


def test_no_replication_series_while_it_flows_against_the_spec() -> None:
    """Spec says rtm (failback committed in git), fabric still replicates ams->rtm."""
    metrics = updated(desired(want("sql01", "rtm")), observed(vm("sql01")))
    assert "drctl_replication_last_sync_timestamp_seconds" not in scrape(metrics)


def test_stalled_replication_keeps_its_series_so_the_rpo_alert_fires() -> None:
    """ResyncRequired and Paused ship nothing: exactly when the RPO alert must see the age.

    InitialSync has no replica yet and no series: the phase (Syncing) says so.
    """
    metrics = updated(
        desired(want("sql01"), want("app01"), want("web01")),
        observed(
            vm("sql01", rstate=ReplicationState.RESYNC_REQUIRED, last_sync_age=900.0),
            vm("app01", rstate=ReplicationState.PAUSED, last_sync_age=900.0),
            vm("web01", rstate=ReplicationState.INITIAL_SYNC),
        ),
    )
    assert set(scrape(metrics)["drctl_replication_last_sync_timestamp_seconds"]) == {
        lbl(plan="finance", vm="sql01"),
        lbl(plan="finance", vm="app01"),
    }


# --- actions -----------------------------------------------------------------------------


def test_in_flight_gauge_goes_up_on_start_and_down_when_the_job_ends() -> None:
    metrics = Metrics()
    in_flight = lbl(operation="PlannedFailover")
    assert scrape(metrics)["drctl_actions_in_flight"][in_flight] == 0.0
    metrics.record_event(event(EventKind.STARTED, "sql01", OP.PLANNED_FAILOVER, "job-1"))
    metrics.record_event(event(EventKind.STARTED, "web01", OP.PLANNED_FAILOVER, "job-2"))
    assert scrape(metrics)["drctl_actions_in_flight"][in_flight] == 2.0
    metrics.record_event(
        event(
            EventKind.SUCCEEDED,
            "sql01",
            OP.PLANNED_FAILOVER,
            "job-1",
            seconds=90.0,
            data_loss_seconds=0.0,
        )
    )
    metrics.record_event(
        event(EventKind.FAILED, "web01", OP.PLANNED_FAILOVER, "job-2", seconds=20.0, error="boom")
    )
    assert scrape(metrics)["drctl_actions_in_flight"][in_flight] == 0.0


def test_a_job_adopted_after_a_restart_never_drives_in_flight_below_zero() -> None:
    """The executor adopts a previous run's jobs without a `started` event."""
    metrics = Metrics()
    metrics.record_event(event(EventKind.SUCCEEDED, "sql01", OP.COMMIT, "job-7", seconds=3.0))
    got = scrape(metrics)
    assert got["drctl_actions_in_flight"][lbl(operation="Commit")] == 0.0
    assert got["drctl_actions_total"][lbl(operation="Commit", result="succeeded")] == 1.0


def test_actions_total_counts_outcomes_and_duration_times_finished_jobs() -> None:
    metrics = Metrics()
    metrics.record_event(event(EventKind.STARTED, "sql01", OP.COMMIT, "job-1"))
    metrics.record_event(event(EventKind.SUCCEEDED, "sql01", OP.COMMIT, "job-1", seconds=4.0))
    metrics.record_event(event(EventKind.STARTED, "web01", OP.COMMIT, "job-2"))
    metrics.record_event(event(EventKind.FAILED, "web01", OP.COMMIT, "job-2", seconds=40.0))
    metrics.record_event(event(EventKind.REFUSED, "app01", OP.COMMIT, None, error="no"))
    metrics.record_event(event(EventKind.THROTTLED, "app01", OP.STOP_VM, None, error="429"))
    got = scrape(metrics)
    actions = got["drctl_actions_total"]
    assert actions[lbl(operation="Commit", result="succeeded")] == 1.0
    assert actions[lbl(operation="Commit", result="failed")] == 1.0
    assert actions[lbl(operation="Commit", result="refused")] == 1.0
    assert actions[lbl(operation="StopVM", result="throttled")] == 1.0
    assert not any(dict(labels)["result"] == "started" for labels in actions)
    assert got["drctl_action_duration_seconds_count"] == {lbl(operation="Commit"): 2.0}
    assert got["drctl_action_duration_seconds_sum"] == {lbl(operation="Commit"): 44.0}
    assert got["drctl_action_duration_seconds_bucket"][lbl(operation="Commit", le="5.0")] == 1.0


def test_data_loss_histogram_has_one_sample_per_failover_zero_for_planned() -> None:
    metrics = Metrics()
    metrics.record_event(
        event(EventKind.SUCCEEDED, "sql01", OP.PLANNED_FAILOVER, "job-1", seconds=120.0)
    )
    metrics.record_event(
        event(
            EventKind.SUCCEEDED,
            "web01",
            OP.UNPLANNED_FAILOVER,
            "job-2",
            seconds=60.0,
            data_loss_seconds=42.5,
        )
    )
    # A failed failover moved nothing and lost nothing: no sample.
    metrics.record_event(
        event(
            EventKind.FAILED,
            "app01",
            OP.UNPLANNED_FAILOVER,
            "job-3",
            seconds=5.0,
            error="replica unreachable",
        )
    )
    got = scrape(metrics)
    assert got["drctl_failover_data_loss_seconds_count"] == {lbl(plan="finance"): 2.0}
    assert got["drctl_failover_data_loss_seconds_sum"] == {lbl(plan="finance"): 42.5}
    buckets = got["drctl_failover_data_loss_seconds_bucket"]
    assert buckets[lbl(plan="finance", le="0.0")] == 1.0  # the planned one
    assert buckets[lbl(plan="finance", le="60.0")] == 2.0


# --- reconcile, spec, recovery times --------------------------------------------------


def test_reconcile_passes_are_counted_by_result_and_timed() -> None:
    metrics = Metrics()
    metrics.record_reconcile("success", 0.2)
    metrics.record_reconcile("success", 0.3)
    metrics.record_reconcile("invalid_spec", 0.01)
    got = scrape(metrics)
    assert got["drctl_reconcile_total"] == {
        lbl(result="success"): 2.0,
        lbl(result="error"): 0.0,
        lbl(result="invalid_spec"): 1.0,
    }
    assert got["drctl_reconcile_duration_seconds_count"] == {(): 3.0}
    assert got["drctl_reconcile_duration_seconds_sum"][()] == pytest.approx(0.51)


def test_an_unknown_reconcile_result_is_refused_rather_than_made_a_series() -> None:
    with pytest.raises(ValueError, match="'sucess'"):
        Metrics().record_reconcile("sucess", 0.1)


def test_no_spec_series_before_the_daemon_has_read_a_spec() -> None:
    got = scrape(Metrics())
    assert "drctl_spec_valid" not in got
    assert "drctl_spec_revision_info" not in got
    assert "drctl_last_spec_change_timestamp_seconds" not in got


def test_revision_info_has_exactly_one_series_after_a_change() -> None:
    metrics = Metrics()
    metrics.set_spec(True, "3f2a9c1", 1_790_000_000.0)
    metrics.set_spec(True, "8b41d07", 1_790_000_600.0)
    got = scrape(metrics)
    assert got["drctl_spec_revision_info"] == {lbl(revision="8b41d07"): 1.0}
    assert got["drctl_last_spec_change_timestamp_seconds"] == {(): 1_790_000_600.0}
    assert got["drctl_spec_valid"] == {(): 1.0}


def test_an_invalid_revision_keeps_the_one_in_force() -> None:
    metrics = Metrics()
    metrics.set_spec(True, "3f2a9c1", 1_790_000_000.0)
    metrics.set_spec(False, "3f2a9c1", 1_790_000_000.0)
    got = scrape(metrics)
    assert got["drctl_spec_valid"] == {(): 0.0}
    assert got["drctl_spec_revision_info"] == {lbl(revision="3f2a9c1"): 1.0}


def test_placement_and_convergence_times_are_histograms_per_plan() -> None:
    o = observed(vm("sql01"))
    metrics = updated(desired(want("sql01")), o)
    before = scrape(metrics)
    # Every plan's histograms exist, empty, from the first pass that sees it.
    assert before["drctl_placement_duration_seconds_count"] == {lbl(plan="finance"): 0.0}
    metrics.observe_placement("finance", 540.0)
    metrics.observe_convergence("finance", 2400.0)
    got = scrape(metrics)
    assert got["drctl_placement_duration_seconds_count"] == {lbl(plan="finance"): 1.0}
    assert got["drctl_placement_duration_seconds_sum"] == {lbl(plan="finance"): 540.0}
    assert got["drctl_placement_duration_seconds_bucket"][lbl(plan="finance", le="600.0")] == 1.0
    assert got["drctl_placement_duration_seconds_bucket"][lbl(plan="finance", le="300.0")] == 0.0
    assert got["drctl_convergence_duration_seconds_sum"] == {lbl(plan="finance"): 2400.0}


# --- a failover and failback on the simulated fabric ----------------------------------------


def test_a_round_trip_on_the_simulator_leaves_consistent_metrics() -> None:
    """Fail sql01 over to rtm and back with real plan+execute steps feeding the metrics.

    During each failover its replication series is gone; afterwards it is back
    in the new direction; two planned failovers lost nothing; nothing is in flight.
    """
    clock = VirtualClock(NOW)
    metrics = Metrics()
    mid_failover: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        sim.init_fabric(Path(tmp), inventory(inventory_vm("sql01"), inventory_vm("app01")), clock)
        clock.advance(10)
        with (
            sim.SimFabric(Path(tmp), clock) as fabric,
            contextlib.closing(journal.Journal(Path(tmp))) as journal_db,
        ):
            executor = execute.Executor(
                fabric,
                journal_db,
                clock,
                execute.Settings(poll_interval=1.0),
                on_event=metrics.record_event,
            )

            def after_step(built: plan.Plan) -> None:
                o = fabric.observe()
                metrics.update_from_plan(built, o)
                job = o.vms["sql01"].job
                if job is not None and job.running and job.operation is OP.PLANNED_FAILOVER:
                    syncs = scrape(metrics)["drctl_replication_last_sync_timestamp_seconds"]
                    mid_failover.append(lbl(plan="finance", vm="sql01") in syncs)

            for site in ("rtm", "ams"):
                outcome = execute.apply(
                    executor,
                    desired(want("sql01", site), want("app01")),
                    f"rev-{site}",
                    timeout=600,
                    after_step=after_step,
                )
                assert outcome.converged
                clock.advance(10)  # a replication cycle after the reprotect
                after_step(
                    executor.step(desired(want("sql01", site), want("app01")), f"rev-{site}")
                )
                got = scrape(metrics)
                assert (
                    got["drctl_vm_info"][
                        lbl(
                            plan="finance",
                            vm="sql01",
                            desired_site=site,
                            active_site=site,
                            replication=f"{site}->{'ams' if site == 'rtm' else 'rtm'}",
                            phase="Converged",
                        )
                    ]
                    == 1.0
                )
                assert (
                    lbl(plan="finance", vm="sql01")
                    in got["drctl_replication_last_sync_timestamp_seconds"]
                )
    assert mid_failover
    assert not any(mid_failover)
    assert got["drctl_plan_converged"] == {lbl(plan="finance"): 1.0}
    assert got["drctl_actions_total"][lbl(operation="PlannedFailover", result="succeeded")] == 2.0
    assert got["drctl_failover_data_loss_seconds_count"] == {lbl(plan="finance"): 2.0}
    assert got["drctl_failover_data_loss_seconds_sum"] == {lbl(plan="finance"): 0.0}
    assert all(v == 0.0 for v in got["drctl_actions_in_flight"].values())


def test_vm_running_says_whether_a_copy_runs_and_nan_when_the_fabric_cannot_tell() -> None:
    """1: a copy is known to run (where the spec wants it, or still at the source of a move);
    0: none runs anywhere (stopped, or not in the fabric); NaN: none known, a site Unknown."""
    metrics = updated(
        desired(
            want("sql01"),
            want("web01", "rtm"),
            want("web02"),
            want("app01"),
            want("app02"),
            want("gone01"),
        ),
        observed(
            vm("sql01"),
            vm("web01"),
            vm("web02", running=()),
            vm("app01", unknown=("ams",)),
            vm("app02", unknown=("rtm",)),
        ),
    )
    got = scrape(metrics)["drctl_vm_running"]
    nan = {k for k, v in got.items() if math.isnan(v)}
    assert nan == {lbl(plan="finance", vm="app01")}
    assert {k: v for k, v in got.items() if k not in nan} == {
        lbl(plan="finance", vm="sql01"): 1.0,
        lbl(plan="finance", vm="web01"): 1.0,
        lbl(plan="finance", vm="web02"): 0.0,
        lbl(plan="finance", vm="app02"): 1.0,
        lbl(plan="finance", vm="gone01"): 0.0,
    }
    assert 'drctl_vm_running{plan="finance",vm="app01"} NaN\n' in metrics.exposition().decode()


def test_vm_running_is_nan_for_a_vm_of_a_fabric_that_was_not_observed() -> None:
    unreachable = Observed(sites={}, vms={}, unreachable="connection refused")
    got = scrape(updated(desired(want("sql01")), unreachable))["drctl_vm_running"]
    assert math.isnan(got[lbl(plan="finance", vm="sql01")])


def test_vm_copies_running_counts_the_sites_a_copy_is_known_to_run_at() -> None:
    """2 is a split brain; a site whose power is Unknown is not counted; NaN unobserved."""
    metrics = updated(
        desired(want("sql01"), want("web01"), want("web02"), want("app01"), want("gone01")),
        observed(
            vm("sql01"),
            vm("web01", running=("ams", "rtm")),
            vm("web02", running=()),
            vm("app01", unknown=("rtm",)),
        ),
    )
    assert scrape(metrics)["drctl_vm_copies_running"] == {
        lbl(plan="finance", vm="sql01"): 1.0,
        lbl(plan="finance", vm="web01"): 2.0,
        lbl(plan="finance", vm="web02"): 0.0,
        lbl(plan="finance", vm="app01"): 1.0,
        lbl(plan="finance", vm="gone01"): 0.0,
    }
    unreachable = Observed(sites={}, vms={}, unreachable="connection refused")
    got = scrape(updated(desired(want("sql01")), unreachable))["drctl_vm_copies_running"]
    assert math.isnan(got[lbl(plan="finance", vm="sql01")])


# --- what promtool says --------------------------------------------------------------------


def test_promtool_check_metrics_reports_no_problem_on_a_realistic_exposition() -> None:
    metrics = updated(
        desired(
            want("sql01"),
            want("web01", "rtm"),
            want("app01", replication=None),
            want("hr01", plan="hr"),
            want("gone01"),
            want("db01"),
        ),
        observed(
            vm("sql01"),
            vm("web01", running=(), job=job("web01", progress=0.4, age=30.0)),
            vm("app01", replication=None, protection=ProtectionState.UNPROTECTED),
            vm("hr01", rstate=ReplicationState.RESYNC_REQUIRED),
            vm("db01", unknown=("ams", "rtm")),  # drctl_vm_running NaN
        ),
    )
    metrics.set_spec(True, "3f2a9c1", 1_790_000_000.0)
    metrics.set_trusted(False)
    metrics.record_reconcile("success", 0.4)
    metrics.record_event(event(EventKind.STARTED, "web01", OP.PLANNED_FAILOVER))
    metrics.record_event(event(EventKind.SUCCEEDED, "web01", OP.PLANNED_FAILOVER, seconds=200.0))
    metrics.observe_placement("finance", 300.0)
    metrics.observe_convergence("finance", 900.0)
    assert b'drctl_vm_running{plan="finance",vm="db01"} NaN' in metrics.exposition()
    assert b"drctl_spec_revision_trusted 0.0" in metrics.exposition()
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=metrics.exposition(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_promtool_check_metrics_would_report_a_problem() -> None:
    """The check above can fail: promtool does flag a badly named series."""
    bad = b"# HELP drctl_actions Actions.\n# TYPE drctl_actions counter\ndrctl_actions 1\n"
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=bad, capture_output=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert b'counter metrics should have "_total" suffix' in result.stdout + result.stderr


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    rules = RULES_TEST.with_name("drctl-rules.yaml")
    checked = subprocess.run(
        [promtool(), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool(), "test", "rules", str(RULES_TEST)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


# --- serving ---------------------------------------------------------------------------------


def test_serve_answers_a_scrape_over_http() -> None:
    metrics = updated(desired(want("sql01")), observed(vm("sql01")))
    served = metrics.serve("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{served.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        served.close()
    assert 'drctl_vm_converged{plan="finance",vm="sql01"} 1.0' in body
