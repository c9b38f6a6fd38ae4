"""Break-glass records: what an operator did by hand to drctl itself, kept in the journal.

Two kinds, each written by the command that does it (cli/breakglass.py) and
shown by `drctl audit` (gitops/audit.py) under the revision in force then:

- `retry` (`drctl retry`): clears the attempt budget of the revision in force
  for some VMs. The record says through which journal entry it clears
  (`through`: the newest action id when it was made) and which actions of
  those VMs were still open then (`still_open`: their outcome comes after the
  clear, so it counts). `Journal.attempts` of either backend leaves out of the
  tally every earlier action of a cleared VM (`cleared`), so a daemon's next
  pass, which reads the attempts from the journal, plans the VM again.
- `reconcile` (`drctl reconcile`): a person asked the daemon for a pass now.

A record starts nothing: the daemon acts on what it plans, as after any
change. Both journal backends (engine/journal.py, engine/journal_etcd.py)
keep the record as the JSON of `to_json`.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import socket
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from reconciler import errors

RETRY = "retry"
RECONCILE = "reconcile"
KINDS = (RETRY, RECONCILE)


@dataclasses.dataclass(frozen=True)
class Intervention:
    kind: str  # RETRY or RECONCILE
    revision: str | None  # the revision in force when it was made (None: no daemon had one)
    by: str  # the user who ran the command
    host: str  # where it ran
    at: datetime  # timezone-aware
    # RETRY: the (plan, VM) cleared, each with its failed attempts by operation then.
    vms: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...] = ()
    through: int = 0  # RETRY: clears the actions of those VMs up to this journal id...
    still_open: frozenset[int] = frozenset()  # ... but these, open then
    detail: str = ""  # RECONCILE: how the daemon was asked (its pid, the signal)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "revision": self.revision,
            "by": self.by,
            "host": self.host,
            "at": self.at.isoformat(timespec="microseconds"),
            "vms": [
                {"plan": plan, "vm": vm, "failedAttempts": dict(spent)}
                for plan, vm, spent in self.vms
            ],
            "through": self.through,
            "stillOpen": sorted(self.still_open),
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, value: object) -> Intervention:
        """The record in `value` (parsed JSON); `StateFileError` when it is not one."""
        try:
            assert isinstance(value, dict)  # noqa: S101 (caught below, as any bad shape)
            at = datetime.fromisoformat(value["at"])
            vms = tuple(
                (str(v["plan"]), str(v["vm"]), tuple(sorted(dict(v["failedAttempts"]).items())))
                for v in value["vms"]
            )
            return cls(
                kind=str(value["kind"]),
                revision=None if value["revision"] is None else str(value["revision"]),
                by=str(value["by"]),
                host=str(value["host"]),
                at=at,
                vms=vms,
                through=int(value["through"]),
                still_open=frozenset(int(i) for i in value["stillOpen"]),
                detail=str(value["detail"]),
            )
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise errors.StateFileError(f"not a break-glass record: {value!r}") from exc

    def to_text(self) -> str:
        return json.dumps(self.to_json())

    def clears(self, vm: str, entry_id: int) -> bool:
        """Whether this record takes journal action `entry_id` of `vm` out of the attempts."""
        return (
            self.kind == RETRY
            and entry_id <= self.through
            and entry_id not in self.still_open
            and any(name == vm for _, name, _ in self.vms)
        )

    def lines(self, vm: str | None = None) -> Iterator[str]:
        """What `drctl audit` says of it, a line each (indented by the caller); of a
        retry, only the line of `vm`."""
        when = self.at.isoformat(timespec="seconds")
        if self.kind == RECONCILE:
            yield f"reconcile requested by {self.by}@{self.host} at {when} ({self.detail})"
            return
        for _, name, spent in self.vms:
            if vm is None or name == vm:
                counted = ", ".join(f"{n} failed {op}" for op, n in spent if n) or "a backoff"
                who = f"{self.by}@{self.host}"
                yield f"attempts cleared by {who} at {when} (drctl retry: {counted})"


def who() -> tuple[str, str]:
    """The user running this command and the host, as a record names them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a container without passwd)
        user = "unknown"
    return user, socket.gethostname()


def cleared(
    rows: Iterable[tuple[Any, ...]], records: Iterable[Intervention], revision: str
) -> Iterator[tuple[Any, ...]]:
    """Rows (id, vm, ...) of `revision`'s actions without those a retry of it cleared.

    A retry clears the budget of the revision in force when it was made only:
    a later revision counts its own, and the same edit applied again later
    (the same revision) starts from what was spent since the clear.
    """
    retries = [r for r in records if r.kind == RETRY and r.revision == revision]
    for row in rows:
        entry_id, vm = row[0], row[1]
        if not any(r.clears(vm, entry_id) for r in retries):
            yield row
