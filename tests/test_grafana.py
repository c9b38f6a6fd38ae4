"""The shipped Grafana dashboard imports anywhere, and every query ships as drctl means it.

Structure as Grafana's JSON model wants it (unique ids, a grid that fits,
each target an `expr`), a Prometheus datasource variable and no hard-coded
datasource uid, every variable an expression knows; and, for the dashboard
and the alert rules alike, each per-VM, per-plan or drill series aggregated
with `max by` (or `group by`): every replica exports them from its own
observation, so a `sum` would count a VM once per replica. The queries
themselves run on a real Prometheus in tests/e2e/test_dashboard.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from e2e import promql

# Series each replica exports from its own observation, one per plan or VM.
_REPLICATED = re.compile(r"\bdrctl_(?:vm|plan|replication|drill)_\w+")
_WRAPPED = re.compile(r"(?:max|group) by \(([^)]*)\) \(\s*$")
_OWN_UID = "${datasource}"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return promql.load_dashboard()


def datasources(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every `datasource` value anywhere in the JSON, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from datasources(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from datasources(value, f"{path}[{i}]")


def test_the_dashboard_picks_its_prometheus_from_a_variable_and_hard_codes_no_uid(
    dashboard: dict[str, Any],
) -> None:
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    for path, value in datasources(dashboard):
        if path.startswith(".annotations"):  # Grafana's own built-in annotation query
            assert value == {"type": "grafana", "uid": "-- Grafana --"}
            continue
        assert value == {"type": "prometheus", "uid": _OWN_UID}, path
    for panel in promql.panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": _OWN_UID}, panel["title"]
    assert "__inputs" not in dashboard or dashboard["__inputs"] == []


def test_panels_have_unique_ids_targets_with_an_expr_and_a_grid_that_fits(
    dashboard: dict[str, Any],
) -> None:
    every = list(promql.panels(dashboard))
    ids = [panel["id"] for panel in every]
    assert len(ids) == len(set(ids)), sorted(ids)
    titles = [panel["title"] for panel in every]
    assert len(titles) == len(set(titles)), sorted(titles)  # tests name panels by title
    assert dashboard["uid"] == "drctl" and dashboard["title"] and dashboard["schemaVersion"] >= 36
    boxes: list[tuple[int, int, int, int, str]] = []
    for panel in every:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        for other in boxes:
            x, y, w, h, title = other
            overlap = (
                grid["x"] < x + w
                and x < grid["x"] + grid["w"]
                and grid["y"] < y + h
                and y < grid["y"] + grid["h"]
            )
            assert not overlap, (panel["title"], title)
        boxes.append((grid["x"], grid["y"], grid["w"], grid["h"], panel["title"]))
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel
        targets = panel["targets"]
        assert targets, panel["title"]
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in targets:
            assert target["expr"].strip(), (panel["title"], target["refId"])


def test_the_dashboard_shows_what_issue_16_asks_for(dashboard: dict[str, Any]) -> None:
    text = " ".join(q.expr for q in promql.dashboard_queries(dashboard))
    titles = " ".join(p["title"] for p in promql.panels(dashboard)).lower()
    for series in (
        "drctl_plan_converged",
        "drctl_vm_info",
        "drctl_actions_total",
        "drctl_placement_duration_seconds",
        "drctl_replication_last_sync_timestamp_seconds",
        "drctl_failover_data_loss_seconds",
        "drctl_vm_held",
        "drctl_vm_stuck",
        "drctl_leader",
        "drctl_drill_last_success_timestamp_seconds",
    ):
        assert series in text, series
    for word in ("converged", "phase", "actions", "rto", "rpo", "lost", "held", "leader", "drill"):
        assert word in titles, word


def test_every_expression_uses_only_variables_the_dashboard_defines(
    dashboard: dict[str, Any],
) -> None:
    defined = {v["name"]: "x" for v in dashboard["templating"]["list"]}
    for query in promql.dashboard_queries(dashboard):
        promql.substitute(query.expr, defined)  # raises on an unknown one


def test_variable_substitution_covers_every_grafana_spelling() -> None:
    expr = 'rate(x{job="$job", plan=~"${plan}", vm="[[vm]]"}[$__rate_interval])'
    assert promql.substitute(expr, {"job": "drctl", "plan": ".*", "vm": "a"}) == (
        'rate(x{job="drctl", plan=~".*", vm="a"}[15s])'
    )
    with pytest.raises(AssertionError, match=r"unknown variable \$nope"):
        promql.substitute('x{a="$nope"}', {})


def unaggregated(expr: str, by: set[str]) -> list[str]:
    """The per-replica series in `expr` not directly inside `max by (...)`/`group by (...)`
    with at least the labels `by`, and any `sum` in an expression that reads one."""
    problems = []
    for found in _REPLICATED.finditer(expr):
        wrapped = _WRAPPED.search(expr[: found.start()])
        labels = set() if wrapped is None else {s.strip() for s in wrapped[1].split(",")}
        if not by <= labels:
            problems.append(found[0])
    if problems or (_REPLICATED.search(expr) and re.search(r"\bsum\b", expr)):
        problems.append("sum" if not problems else "")
    return [p for p in problems if p]


def test_the_aggregation_check_catches_a_sum_and_a_bare_series() -> None:
    assert unaggregated("max by (plan, vm) (drctl_vm_held) == 1", {"plan"}) == []
    assert unaggregated("drctl_vm_held == 1", {"plan"}) == ["drctl_vm_held"]
    assert unaggregated("sum by (plan) (drctl_vm_held)", {"plan"}) == ["drctl_vm_held"]
    assert unaggregated("count(max by (plan, vm) (drctl_vm_held) == 1)", {"plan"}) == []
    assert unaggregated("max by (plan) (drctl_vm_held) + sum(x)", {"plan"}) == ["sum"]
    assert unaggregated("max by (vm) (drctl_vm_held)", {"plan", "job"}) == ["drctl_vm_held"]


def test_dashboard_panels_aggregate_replicated_series_with_max_never_sum(
    dashboard: dict[str, Any],
) -> None:
    for query in promql.dashboard_queries(dashboard):
        if query.where.startswith("variable"):
            continue  # label_values: which plans exist, whichever replica says so
        assert unaggregated(query.expr, {"plan"}) == [], (query.where, query.expr)


def test_alert_rules_aggregate_replicated_series_with_max_by_job_never_sum() -> None:
    queries = promql.rule_queries()
    assert len(queries) >= 24
    for query in queries:
        assert unaggregated(query.expr, {"job", "plan"}) == [], (query.where, query.expr)
