"""`drctl run --adopt-safely`: the first revision that would move a VM waits for a second commit.

On the first day the specs were imported (`drctl import`) and should move
nothing. If the first revision the daemon sees that would fail over any VM
does move some (the import was edited, or the fabric changed since), it is
not put in force: the daemon says which VMs it would move and waits for a
later revision, any new commit, to confirm it. That later revision goes in
force as usual (its moves included) and adopt-safely is then done for this
state dir. A revision that moves nothing goes in force as usual and changes
nothing here.

- Which VMs a revision moves is the blast radius's count
  (`plan.guardrail.moves`): observed at another site than the revision
  wants, not Held, no move already under way; suspended plans are left out.
  When a fabric the revision uses cannot be observed, drctl cannot tell: the
  revision waits, weighed again at each look.
- A dirty work tree (spec files edited, not committed) never confirms: an
  editor saving twice is no decision. Outside git each content is a revision.
- What is held, and that a revision confirmed it, is kept in the state dir
  (`adopt-safely.json`), so that a restarted daemon holds the same revision
  and, once confirmed, never holds one again.

`apply` and a `run` without the flag never reach this module. Called by
`daemon.loop` when it reads a new revision.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

from reconciler.core import plan, state
from reconciler.core.plan import guardrail
from reconciler.daemon.logs import log
from reconciler.engine import state_dir as layout
from reconciler.gitops import revision

# VMs a reason names before it says "and N more".
_NAMED = 10


@dataclasses.dataclass(frozen=True)
class Held:
    revision: str
    moves: tuple[str, ...]  # plan/vm of each VM it would move
    since: datetime

    @property
    def reason(self) -> str:
        named = ", ".join(self.moves[:_NAMED])
        more = f" and {len(self.moves) - _NAMED} more" if len(self.moves) > _NAMED else ""
        return (
            f"adopt-safely: revision {self.revision} would move {len(self.moves)} VMs "
            f"({named}{more}); commit again to confirm (any new commit), or commit specs "
            "that keep them where they run"
        )


class Adoption:
    """Whether the daemon holds the first moving revision, kept in `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self._path = layout.adopt_safely_path(state_dir)
        self.held: Held | None = None
        self.confirmed_by: str | None = None  # the revision that confirmed: done
        self.waiting: tuple[str, str] | None = None  # (revision, why it cannot be weighed now)
        self._load()
        if self.confirmed_by is not None:
            log.info(
                "adopt-safely: revision %s confirmed the first move already: every revision "
                "is applied as usual",
                self.confirmed_by,
                extra={"event": "adopt_safely_done", "revision": self.confirmed_by},
            )

    @property
    def refusal(self) -> tuple[str, list[str]] | None:
        """(revision, reasons) as `drctl status` shows a revision kept out; None if none."""
        if self.held is not None:
            return self.held.revision, [self.held.reason]
        if self.waiting is not None:
            return self.waiting[0], [self.waiting[1]]
        return None

    def answer(self, rev: revision.Revision) -> bool | None:
        """Whether `rev` stays out of force, when that needs no plan: True while a revision
        is held and `rev` is it (or dirty files), False once done or confirmed by `rev`;
        None: weigh it (`weigh`)."""
        if self.confirmed_by is not None:
            return False
        if self.held is None:
            return None
        if rev.id == self.held.revision or rev.dirty:
            return True
        log.warning(
            "adopt-safely: revision %s confirms the move %s held back; it goes in force",
            rev.id,
            self.held.revision,
            extra={
                "event": "adopt_safely_confirmed",
                "revision": rev.id,
                "held": self.held.revision,
            },
        )
        self.confirmed_by, self.held = rev.id, None
        self._save()
        return False

    def weigh(
        self,
        rev: revision.Revision,
        built: plan.Plan,
        observed: dict[str, state.Observed],
        now: datetime,
    ) -> bool:
        """Whether `rev`, planned as `built` against `observed`, is held (the first move)."""
        blind = sorted(name for name, o in observed.items() if o.unreachable is not None)
        if blind:
            why = (
                f"adopt-safely: cannot tell whether revision {rev.id} moves VMs: fabric "
                f"{', '.join(blind)} cannot be observed; it is weighed again at each look"
            )
            if self.waiting != (rev.id, why):
                log.warning("%s", why, extra={"event": "adopt_safely_waiting"})
            self.waiting = (rev.id, why)
            return True
        self.waiting = None
        moving = moves(built)
        if not moving:
            return False
        self.held = Held(rev.id, tuple(moving), now)
        self._save()
        log.warning(
            "%s",
            self.held.reason,
            extra={"event": "adopt_safely_held", "revision": rev.id, "moves": len(moving)},
        )
        return True

    def _load(self) -> None:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            held = data.get("held")
            self.confirmed_by = data.get("confirmedBy")
            if held is not None:
                self.held = Held(
                    str(held["revision"]),
                    tuple(str(m) for m in held["moves"]),
                    datetime.fromisoformat(held["since"]),
                )
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Read as nothing confirmed: holding once more is safe, moving unasked is not.
            log.error(
                "%s is damaged (%s): adopt-safely starts again and holds the next moving revision",
                self._path,
                exc,
                extra={"event": "adopt_safely_unreadable"},
            )
            self.held = self.confirmed_by = None

    def _save(self) -> None:
        held = self.held
        data = {
            "held": None
            if held is None
            else {
                "revision": held.revision,
                "moves": list(held.moves),
                "since": held.since.isoformat(),
            },
            "confirmedBy": self.confirmed_by,
        }
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            tmp.replace(self._path)
        except OSError as exc:
            # Kept in memory: a daemon restarted before it is saved holds once more (safe).
            log.error(
                "adopt-safely cannot keep its state in %s: %s",
                self._path,
                exc,
                extra={"event": "adopt_safely_unsaved"},
            )


def moves(built: plan.Plan) -> list[str]:
    """plan/vm of every VM `built` would fail over anew (suspended plans left out)."""
    vms = built.vms
    return [
        f"{vms[i].plan}/{vms[i].name}"
        for i in guardrail.moves(vms)
        if vms[i].phase is not plan.Phase.SUSPENDED
    ]
