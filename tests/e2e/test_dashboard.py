"""Every PromQL expression of the Grafana dashboard and the alert rules, run on a real
Prometheus that scraped a real `drctl run` on the simulator through a scenario.

Prometheus (the Debian package) scrapes the daemon every second and
evaluates deploy/prometheus/drctl-rules.yaml. The scenario makes the data the
panels and rules are about: the target down before the daemon starts, the
daemon waiting for the fabric lock (no leader), a failover of the three-tier
plan with a job that waits for a person and a failed first attempt, a drill,
the failback, replication lagging past three intervals, a job past its
deadline, a suspended plan, a VM blocked on a state drctl does not know, and
one failed over by hand without shutting the old copy down (Held, two copies
running). Then each expression (template variables substituted as Grafana
would) goes through /api/v1/query and /api/v1/query_range: none may error,
and those listed in MUST_HAVE_DATA must return samples.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from e2e import promql
from e2e.harness import OTHER_PLAN, Site, lock_held, three_tier, wait_until
from e2e.prometheus import Prometheus, running_prometheus

pytestmark = pytest.mark.e2e

# The template variables as a user picks them: every plan, then one.
VARIABLES = ({"job": "drctl", "plan": ".*"}, {"job": "drctl", "plan": "finance|hr"})

# Expressions the scenario gives data (a sample that is a number) in the range
# it ran, by panel title and refId, variable, or alert name.
MUST_HAVE_DATA = {
    # the first row of the dashboard
    "Plans converged A",
    "Plans converged B",
    "VMs not converged A",
    "Held A",
    "Stuck A",
    "Waiting for a person A",
    "Leader A",
    # convergence and phases
    "Converged A",
    "Placed A",
    "VMs by phase A",
    "VMs not converged, by phase A",
    # what needs a person: held, stuck, blocked, waiting, split brain, no copy, suspended
    *(f"Held, stuck, blocked, waiting {ref}" for ref in "ABCDE"),
    *(f"VMs that need a person now {ref}" for ref in "ABCDEFG"),
    # actions
    "Actions by outcome A",
    "Failed, refused and throttled A",
    "Jobs in flight A",
    "Job duration (p90) A",
    "Reconcile passes A",
    "Reconcile passes B",
    # recovery
    "Realised RTO (mean over the range) A",
    "Time to converged (mean over the range) A",
    "Replication lag, worst VM of each plan A",
    "Replication lag in intervals (RPO) A",
    "VMs past twice their replication interval A",
    "Writes lost by failovers (range) A",
    "Failovers, and those that lost writes (range) A",
    "Failovers, and those that lost writes (range) B",
    # the leader and the daemons (A, drctl_leader_info, needs --lock etcd://...)
    "Leader over time A",
    "Scraped A",
    "Lease holder as each replica sees it B",
    "Lease holder as each replica sees it C",
    *(f"Each daemon's spec, revision, state dir and journal {ref}" for ref in "ABCEF"),
    "Revision in force A",
    "Revision in force B",
    "Sites as each daemon's fabric reports them A",
    # drills
    "Drills per plan A",
    "Drills per plan B",
    "Drills per plan C",
    "Days since the last passed drill A",
    "drctl alerts firing A",
    "variable job",
    "variable plan",
    # alert rules whose condition the scenario meets (the `for` aside)
    "DrctlVMBlocked",
    "DrctlVMHeld",
    "DrctlVMStuck",
    "DrctlVMWaitingForUser",
    "DrctlVMSplitBrain",
    "DrctlVMNoCopyRunning",
    "DrctlPlanSuspended",
    "DrctlReplicationRPOAtRisk",
    "DrctlReplicationRPOBreached",
    "DrctlNoLeader",
    "DrctlDown",
}
# Series no expression may miss in this Prometheus, but these: the revision's
# trust is exported with `drctl run --require-signed-commits` only (the scenario
# signs nothing), the lease holder with `--lock etcd://...`.
ABSENT_HERE = {"drctl_spec_revision_trusted", "drctl_leader_info"}


def with_drill(plan: str) -> str:
    return plan.replace("  vms:\n", "  drill: {id: q1, keepMinutes: 0.02}\n  vms:\n")


HR_TO_RTM = OTHER_PLAN.replace(
    "activeSite: ams, replication: ams->rtm", "activeSite: rtm, replication: rtm->ams"
).replace("commitAfterSeconds: 0}", "commitAfterSeconds: 0, deadlines: {PlannedFailover: 1}}")


def name_of(query: promql.Query) -> str:
    """How MUST_HAVE_DATA names a query: 'title refId', 'variable name', or the alert."""
    where = query.where
    if where.startswith("panel "):
        _, _, rest = where.split(" ", 2)
        title, ref = rest.rsplit(" ", 1)
        return f"{title[1:-1]} {ref}"
    return where.removeprefix("rule ")


def has_number(result: list[dict[str, Any]]) -> bool:
    values = [v for series in result for _, v in series.get("values", [series.get("value")])]
    return any(v not in ("NaN", "+Inf", "-Inf") for v in values)


def run_all(
    prometheus: Prometheus, queries: list[promql.Query], started: float, ended: float
) -> tuple[list[tuple[str, str, dict[str, Any]]], set[str]]:
    """Each query with each choice of VARIABLES, instant at `ended` and over the range:
    the answers that are errors (or carry warnings), and the queries with no number."""
    errors: list[tuple[str, str, dict[str, Any]]] = []
    empty: set[str] = set()
    for variables in VARIABLES:
        for query in queries:
            expr = promql.substitute(query.expr, variables)
            instant = prometheus.api("query", query=expr, time=f"{ended:.3f}")
            ranged = prometheus.api(
                "query_range", query=expr, start=f"{started:.3f}", end=f"{ended:.3f}", step="1"
            )
            errors.extend(
                (query.where, expr, answer)
                for answer in (instant, ranged)
                if answer["status"] != "success" or answer.get("warnings")
            )
            if ranged["status"] == "success" and not has_number(ranged["data"]["result"]):
                empty.add(name_of(query))
    return errors, empty


def scenario(site: Site, prometheus: Prometheus) -> None:
    prometheus.wait_for_series('up{job="drctl"} == 0')  # nothing listens yet
    with lock_held(site.state):  # another actor holds the fabric: drctl waits
        site.start()
        prometheus.wait_for_series('drctl_leader{job="drctl"} == 0')
    wait_until("finance converged", lambda: site.converged_at("ams"))
    # The failover: web01's job waits for a person, sql01's first attempt fails; a drill of hr.
    site.drctl("fabric", "suspend-next", "web01", "PlannedFailover")
    site.drctl("fabric", "fail", "sql01", "PlannedFailover", "--times", "1")
    site.commit(
        "finance to rtm, drill hr",
        {"finance.yaml": three_tier("rtm"), "hr.yaml": with_drill(OTHER_PLAN)},
    )
    site.pull()
    prometheus.wait_for_series('drctl_vm_info{phase="WaitingForUser"}')
    prometheus.wait_for_series('drctl_drill_last_result{plan="hr"} == 1')
    [waiting] = [j for j in site.jobs() if j["vm"] == "web01" and not j["finishedAt"]]
    site.drctl("fabric", "resume", waiting["id"])
    wait_until("finance converged at rtm", lambda: site.converged_at("rtm"))
    site.commit("finance back to ams", {"finance.yaml": three_tier("ams")})
    site.pull()
    wait_until("finance converged at ams", lambda: site.converged_at("ams"))
    prometheus.wait_for_series('drctl_placement_duration_seconds_count{plan="finance"} == 2')
    # hr's replication lags 8 s behind its 1 s interval, and its move runs past a 1 s deadline.
    site.drctl("fabric", "lag", "hr-web", "8")
    prometheus.wait_for_series(
        "time() - drctl_replication_last_sync_timestamp_seconds"
        ' > 3 * drctl_replication_interval_seconds{vm="hr-web"}'
    )
    site.commit("hr to rtm", {"hr.yaml": HR_TO_RTM})
    site.pull()
    prometheus.wait_for_series('drctl_vm_stuck{vm="hr-web"} == 1')
    suspended = HR_TO_RTM.replace("  vms:\n", "  suspend: true\n  vms:\n")
    site.commit("suspend hr", {"hr.yaml": suspended})
    site.pull()
    prometheus.wait_for_series('drctl_vm_suspended{vm="hr-web"} == 1')
    # An operator fails web02 over by hand, leaving the old copy up; app01 reports a
    # state drctl does not know.
    site.drctl("fabric", "failover", "web02", "rtm", "--unplanned")
    site.drctl("fabric", "raw-state", "app01", "FailoverInProgressUnknownState")
    prometheus.wait_for_series('ALERTS{alertname="DrctlVMHeld", alertstate="firing"}')
    prometheus.wait_for_series('drctl_vm_copies_running{vm="web02"} == 2')
    prometheus.wait_for_series('drctl_vm_blocked{vm="app01"} == 1')


def test_every_dashboard_and_rule_expression_runs_on_prometheus_after_a_real_scenario(
    site: Site,
) -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(promql.RULES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    root = site.root / "prometheus"
    root.mkdir()
    with running_prometheus(root, site.metrics_port, rule_files=[promql.RULES]) as prometheus:
        started = time.time()
        scenario(site, prometheus)
        # What the last steps made lasts: two more scrapes put it on a step of
        # the range queries below (1 s apart from `started`), not only after the last.
        time.sleep(2.5)
        ended = time.time()
        # Prometheus loaded and evaluates every rule without an error.
        groups = prometheus.api("rules")["data"]["groups"]
        evaluated = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert len(evaluated) == len(promql.rule_queries())
        assert {name: r["health"] for name, r in evaluated.items() if r["health"] != "ok"} == {}

        queries = [*promql.dashboard_queries(promql.load_dashboard()), *promql.rule_queries()]
        names = {name_of(query) for query in queries}
        assert not MUST_HAVE_DATA - names, MUST_HAVE_DATA - names
        errors, empty = run_all(prometheus, queries, started, ended)
        assert errors == []
        assert MUST_HAVE_DATA & empty == set()

        # Every series an expression names exists here (a typo in a name would
        # only ever read as "no data"), but those this scenario cannot make.
        exported = set(prometheus.api("label/__name__/values")["data"])
        named = {name for query in queries for name in promql.series_names(query.expr)}
        assert named - exported == ABSENT_HERE
