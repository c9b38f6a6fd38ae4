"""Ordering: boot groups, and the order actions are shown and started in.

A group fails over when the groups it comes `after` run at the target; stops
go the other way, dependents first (design.md section 6). Pure.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable

from reconciler.core.desired import Group
from reconciler.core.plan.model import Action
from reconciler.core.state import Operation

# Display order of actions within a plan: stops (dependents first) before
# failovers (in boot order), then what follows a failover.
STAGE = {
    Operation.STOP_VM: 0,
    Operation.UNPLANNED_FAILOVER: 1,
    Operation.PLANNED_FAILOVER: 1,
    Operation.START_VM: 1,
    Operation.COMMIT: 2,
    Operation.REVERSE_REPLICATE: 3,
    Operation.ENABLE_REPLICATION: 3,
    Operation.DISABLE_REPLICATION: 3,
    Operation.RESYNC: 3,
}


def sort_actions(actions: Iterable[Action]) -> list[Action]:
    """Within each plan: stops, failovers by group, commits, reprotects."""
    return sorted(actions, key=lambda a: (a.plan, STAGE.get(a.operation, 9), a.stage, a.vm))


def group_order(
    groups: tuple[Group, ...],
) -> tuple[dict[str, int], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Each group's boot rank, the groups it follows, and the groups that follow it."""
    before = {g.name: g.after for g in groups}
    after: dict[str, list[str]] = {g.name: [] for g in groups}
    for g in groups:
        for a in g.after:
            after[a].append(g.name)
    rank: dict[str, int] = {}
    for name in graphlib.TopologicalSorter(before).static_order():
        rank[name] = 1 + max((rank[a] for a in before.get(name, ())), default=-1)
    return rank, before, {k: tuple(v) for k, v in after.items()}
