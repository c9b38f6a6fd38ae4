"""What a new valid revision passes before the daemon acts on it, and what is said of it.

`Gate.refuses` refuses a revision that would leave moves in flight unmanaged
(daemon/change.py decides; this module gathers the evidence: a fresh
observation of the fabrics and drctl's own journal) and says so once per
revision; a refused revision is weighed again at each look and goes in force
by itself once its moves are over. `settle` starts a plan's settle window
again when a revision moves its VMs or widens what drctl may do to them.
Called by `daemon.loop` when it reads a revision.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.core.desired import DesiredState, PlanSpec
from reconciler.core.state import Observed
from reconciler.daemon import change, in_force
from reconciler.daemon.logs import log
from reconciler.engine import fabrics, journal_backend


class Gate:
    """The refusal of the newest valid revision, while there is one."""

    def __init__(self) -> None:
        self.refused: tuple[str, list[str]] | None = None  # (revision, why)

    def refuses(
        self,
        rev: str,
        force: in_force.InForce,
        desired: DesiredState,
        fabric: fabrics.Fabrics,
        history: journal_backend.Backend,
    ) -> bool:
        """Whether `desired` (revision `rev`) may not replace `force`; says why once."""
        before = force.desired
        gone = change.dropped(before, desired)
        if not gone and (desired.plans or not before.plans):
            self.refused = None
            return False
        # Fresh from the fabric, and drctl's own calls from the journal: the
        # last pass's observation could miss a move started since.
        moves = change.Moves(
            history.stopped_by_drctl(),
            {e.vm: f"{e.operation} ({e.job_id or 'no job yet'})" for e in history.open_entries()},
        )
        why = change.refusal(before, desired, fabric.observe(before.fabrics_in_use()), moves)
        if why:
            if self.refused is None or self.refused[0] != rev:
                _tell_refused(rev, why, force.revision)
            self.refused = (rev, why)
            return True
        if self.refused is not None:
            log.info("revision %s is no longer refused", rev, extra={"event": "revision_accepted"})
        self.refused = None
        for name in sorted({vm.plan for vm in gone}):
            log.warning(
                "plan %s retired by revision %s: its VMs rest and are left as they are, "
                "unmanaged, their replication untouched",
                name,
                rev,
                extra={"event": "plan_retired", "plan": name, "revision": rev},
            )
        return False


def _tell_refused(rev: str, why: list[str], kept: str) -> None:
    for reason in why:
        log.error(
            "revision %s refused: %s",
            rev,
            reason,
            extra={"event": "revision_refused", "revision": rev, "reason": reason},
        )
    log.warning(
        "revision %s refused: nothing changes; revision in force: %s",
        rev,
        kept,
        extra={"event": "revision_refused", "revision": rev, "in_force": kept},
    )


def settle(
    force: in_force.InForce,
    previous: in_force.InForce | None,
    plan_spec: PlanSpec,
    observed: Observed | None,
    now: datetime,
) -> None:
    """Start the plan's settle window in `force` again if the revision moves its VMs or
    widens consent; else it runs on from `previous`."""
    name = plan_spec.name
    before = None
    if previous is not None:
        before = next((p for p in previous.desired.plans if p.name == name), None)
        if name in previous.settling_since:
            force.settling_since[name] = previous.settling_since[name]
    moving = previous is not None and name in previous.moving_since
    why = change.unsettling(before, plan_spec, observed, was_moving=moving)
    if not why:
        return
    force.settling_since[name] = now
    if plan_spec.settle_seconds > 0:
        log.info(
            "plan %s settles %gs before acting: %s",
            name,
            plan_spec.settle_seconds,
            "; ".join(why),
            extra={"event": "plan_settling", "plan": name, "reasons": why},
        )
