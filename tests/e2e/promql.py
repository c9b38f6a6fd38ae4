"""Every PromQL expression drctl ships: the Grafana dashboard's and the alert rules'.

`dashboard_queries` walks deploy/grafana/drctl.json (every target of every
panel, rows' nested panels included, and the template variables'
`label_values(...)` queries, as the equivalent `group by (label) (...)`),
substituting the template and builtin variables the way Grafana would;
`rule_queries` reads deploy/prometheus/drctl-rules.yaml. Used by
tests/test_grafana.py (the dashboard's structure, how expressions aggregate)
and tests/e2e/test_dashboard.py (each expression run on a real Prometheus).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).parent.parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "drctl.json"
RULES = DEPLOY / "prometheus" / "drctl-rules.yaml"

# What Grafana substitutes for its builtin variables, at the test's 1 s scrape
# interval: a rate window of several scrapes, a range covering a short scenario.
BUILTINS = {"__rate_interval": "15s", "__interval": "2s", "__range": "10m"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)$", re.S)


@dataclass(frozen=True)
class Query:
    where: str  # "panel 12 'Held' B", "variable plan", "rule DrctlVMHeld"
    expr: str  # as shipped, with its variables


def load_dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels a collapsed row holds."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[Query]:
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", ()):
            where = f"panel {panel['id']} {panel['title']!r} {target.get('refId')}"
            found.append(Query(where, target.get("expr", "")))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        matched = _LABEL_VALUES.match(text.strip())
        if matched is None:
            raise AssertionError(f"variable {variable['name']}: not label_values(...): {text}")
        expr = f"group by ({matched['label']}) ({matched['selector']})"
        found.append(Query(f"variable {variable['name']}", expr))
    return found


def rule_queries() -> list[Query]:
    document = yaml.safe_load(RULES.read_text())
    return [
        Query(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in document["groups"]
        for rule in group["rules"]
    ]


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with every $var, ${var} and [[var]] replaced; an unknown one is an error."""

    def one(found: re.Match[str]) -> str:
        name = next(group for group in found.groups() if group)
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise AssertionError(f"unknown variable ${name} in {expr}")

    return _VARIABLE.sub(one, expr)


_SERIES = re.compile(r"\b(?:drctl_\w+|up|ALERTS)\b(?!\s*\()")


def series_names(expr: str) -> set[str]:
    """The metric names `expr` reads (drctl's, `up`, `ALERTS`); label names are not metrics."""
    # Label matchers and `by (...)` lists hold no metric name.
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    return set(_SERIES.findall(bare))
