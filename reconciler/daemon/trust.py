"""`drctl run --require-signed-commits`: a revision acts only if git verifies its commits.

`Trust.judge` weighs each revision the daemon reads (gitops/signature.py
decides; the last accepted revision is the one in force) and sets
`drctl_spec_revision_trusted`; `keep_out` records a valid revision that is
not trusted, with the VMs it would move, and says why once per revision.
Like an invalid revision, it changes nothing: the revision in force stays.
An untrusted revision is judged again at each look, so a signer added to
the allowed signers file (or the keyring) lets it in without a new commit.
Called by `daemon.loop` when it reads a revision; `drctl status` shows
`Untrusted` (engine/status.py) on the VMs it names (ui/kept_out.py).
"""

from __future__ import annotations

from pathlib import Path

from reconciler.core.desired import DesiredState
from reconciler.daemon import in_force
from reconciler.daemon.logs import log
from reconciler.engine import metrics as metrics_
from reconciler.engine import status
from reconciler.gitops import revision, signature


class Trust:
    """The newest revision's verdict, and the revision kept out while it is not trusted."""

    def __init__(
        self, specs_dir: Path, policy: signature.Policy, metrics: metrics_.Metrics
    ) -> None:
        self.specs_dir = specs_dir
        self.policy = policy
        self.metrics = metrics
        self.untrusted: status.Untrusted | None = None
        self._told: str | None = None  # the revision whose refusal was logged

    def judge(self, rev: revision.Revision, force: in_force.InForce | None) -> bool:
        """Whether `rev` may replace `force`: every commit that must be is verified.

        `GitError` when git cannot read the repository (the loop keeps the
        revision in force and says so, as for any git trouble).
        """
        accepted = force.revision if force is not None else None
        if accepted is not None and accepted == rev.id and revision.is_commit(accepted):
            verdict = signature.Verdict(True, ())  # the revision in force: judged when it came
        else:
            base = accepted if accepted is not None and revision.is_commit(accepted) else None
            verdict = signature.judge(self.specs_dir, rev, base, self.policy)
        self.metrics.set_trusted(verdict.trusted)
        if verdict.trusted:
            if self.untrusted is not None:
                log.info(
                    "revision %s is signed as required",
                    rev.id,
                    extra={"event": "revision_trusted", "revision": rev.id},
                )
            self.untrusted = None
            self._told = None
            return True
        self.untrusted = status.Untrusted(rev.id, verdict.reasons)
        return False

    def keep_out(self, rev: str, desired: DesiredState, force: in_force.InForce | None) -> None:
        """`rev` is valid and not trusted: name the VMs it would move, say why once."""
        assert self.untrusted is not None  # noqa: S101 (`judge` said no)
        vms = would_move(desired, force.desired if force is not None else None)
        self.untrusted = status.Untrusted(rev, self.untrusted.reasons, vms)
        if self._told == rev:
            return
        self._told = rev
        kept = force.revision if force is not None else "none"
        for reason in self.untrusted.reasons:
            log.error(
                "revision %s not applied: %s",
                rev,
                reason,
                extra={"event": "revision_untrusted", "revision": rev, "reason": reason},
            )
        moved = ", ".join(f"{plan}/{vm}" for plan, vm in vms) or "none"
        log.warning(
            "revision %s is not signed as required: nothing changes; revision in force: %s; "
            "VMs it would move: %s",
            rev,
            kept,
            moved,
            extra={
                "event": "revision_untrusted",
                "revision": rev,
                "in_force": kept,
                "vms": [f"{plan}/{vm}" for plan, vm in vms],
            },
        )


def would_move(desired: DesiredState, before: DesiredState | None) -> tuple[tuple[str, str], ...]:
    """(plan, vm) of each VM whose desired site or replication `desired` changes from `before`
    (every VM of `desired` when nothing is in force)."""
    was = {} if before is None else {vm.name: vm for vm in before.vms()}
    changed = []
    for vm in desired.vms():
        old = was.get(vm.name)
        if old is None or (old.active_site, old.replication_text) != (
            vm.active_site,
            vm.replication_text,
        ):
            changed.append((vm.plan, vm.name))
    return tuple(sorted(changed))
