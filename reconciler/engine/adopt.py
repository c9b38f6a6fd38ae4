"""Which job of the fabric an interrupted call started: the rule the executor adopts by.

The executor (`execute.Executor`) records an intent before each call and the
job id after it. When it finds an intent with no job id (the process died in
between) or a start that failed transiently (a timeout the fabric may have
taken), it reads the fabric's job list and asks `find_job` which job that
call started. No rule here compares drctl's clock with the fabric's: they
drift apart, and a window of time both adopts an operator's job started in
it and misses drctl's own job when the fabric's clock is behind.

- A fabric that keeps intent ids (`Provider.keeps_intent_ids`, ASR): the job
  whose intent id is the entry's, and no other, whatever its VM, operation or
  time. No such job: the call never reached the fabric.
- A fabric that keeps none (Hyper-V Replica), or an entry recorded before
  drctl kept intent ids: the jobs of the entry's VM and operation (and target
  site, when both name one) that carry no intent id and come after the
  newest job of that VM the journal knows, in the fabric's list (start
  order: a position, not a time). One such job is the call's. None: the call
  never reached the fabric. Two or more: none is adopted, the entry is
  unsettled and its VM starts nothing under that revision; once another
  revision is in force it is closed and the VM planned from what the fabric
  reports (a failover among those jobs then reads as made outside drctl:
  Held). The rule's limit: when drctl's call never reached the fabric, an
  operator's job of that operation on that VM started after drctl's last
  known job there is taken for drctl's.

Pure: it reads the job list and the journal's entries, and calls nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from reconciler.core import state
from reconciler.engine import journal


@dataclass(frozen=True, slots=True)
class Found:
    """What the fabric's job list says of one entry's call."""

    job: state.Job | None = None  # the job the call started: adopt it
    candidates: tuple[state.Job, ...] = ()  # two or more that could be it: adopt none


def find_job(
    entry: journal.Entry,
    jobs: Sequence[state.Job],
    known: Collection[str],
    keeps_intent_ids: bool,
) -> Found:
    """The job `entry`'s call started, among `jobs` (the fabric's list, in start order).

    `known` holds the job id of every journal entry. Nothing found (`Found()`)
    means the call never reached the fabric.
    """
    if keeps_intent_ids and entry.intent_id is not None:
        return Found(next((j for j in jobs if j.intent_id == entry.intent_id), None))
    of_vm = [j for j in jobs if j.vm == entry.vm]
    newest_known = max((i for i, j in enumerate(of_vm) if j.id in known), default=-1)
    candidates = tuple(
        j
        for j in of_vm[newest_known + 1 :]
        if j.operation is entry.operation
        and j.intent_id is None
        and (entry.target_site is None or j.target_site in {None, entry.target_site})
    )
    if len(candidates) == 1:
        return Found(candidates[0])
    return Found(candidates=candidates)


def held_reason(entry: journal.Entry, found: Found, fabric: str, keeps_intent_ids: bool) -> str:
    """Why `entry`'s VM starts nothing while several jobs could be its call (status, journal)."""
    return (
        f"{_doubt(entry, found, fabric, keeps_intent_ids)} and never guesses: {entry.vm} starts "
        "nothing until a new revision is committed, which plans it again from what the "
        "fabric reports and takes none of those jobs for drctl's"
    )


def released_reason(
    entry: journal.Entry, found: Found, fabric: str, keeps_intent_ids: bool, revision: str
) -> str:
    """Why `entry` was closed with its outcome unknown when `revision` came into force."""
    return (
        f"{_doubt(entry, found, fabric, keeps_intent_ids)}; closed when revision {revision} "
        f"came into force, none of those jobs taken for drctl's"
    )


def _doubt(entry: journal.Entry, found: Found, fabric: str, keeps_intent_ids: bool) -> str:
    why = (
        "the call was made before drctl kept intent ids"
        if keeps_intent_ids
        else f"fabric '{fabric}' keeps no intent ids"
    )
    return (
        f"drctl cannot tell which of jobs {', '.join(j.id for j in found.candidates)} is the "
        f"{entry.operation} it called before it restarted ({why})"
    )
