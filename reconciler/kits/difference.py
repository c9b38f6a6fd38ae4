"""What changes between two states of one VM, field by field, as DeepDiff finds it.

`drctl plan` shows, for each VM whose desired state differs from what the
fabric reports, each field from the fabric's value to the desired one
(ui/report.py); `drctl audit` shows, for each VM a commit changed, each field
from the last valid revision's value to the new one (gitops/audit.py). Both
call `compare_fields`, so both describe a change the same way. It lives in
kits/ because gitops/ sits below ui/; it is the one module of drctl that
imports deepdiff.

DeepDiff costs ~0.15 ms per VM and ~70 ms to import (bench/changes_scale.py,
shared/perf-notes.md), too much for 100k VMs or for every reconcile:
- callers find the VMs that differ with a keyed comparison first (tuple
  `!=`) and pass only those;
- a state is a tuple of values without the VM's name, and the answer for a
  pair of states is remembered: VMs share a handful of distinct states, so
  DeepDiff runs a few times per process however many VMs differ;
- deepdiff is imported on the first pair that differs, so a command that
  finds no difference (and `validate`, `status`, the daemon) never loads it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any

# field -> (old, new); None on the side where the VM does not exist.
Change = dict[str, tuple[Any, Any]]
State = tuple[Hashable, ...]  # one value per field, in the fields' order

# Distinct (old, new) pairs remembered: far more than a spec directory has.
_REMEMBERED = 4096


def compare_fields(fields: tuple[str, ...], old: State | None, new: State | None) -> Change:
    """The fields of `fields` whose value differs between `old` and `new`, in that order.

    `old` or `new` is None when the VM does not exist on that side: then every
    field changes, from or to None. A field whose value is itself a tuple
    changes as a whole: the pair holds the old and the new tuple.
    """
    if old == new:
        return {}
    return {name: (before, after) for name, before, after in _compare(fields, old, new)}


@functools.lru_cache(maxsize=_REMEMBERED)
def _compare(
    fields: tuple[str, ...], old: State | None, new: State | None
) -> tuple[tuple[str, Any, Any], ...]:
    from deepdiff import DeepDiff  # noqa: PLC0415 (~70 ms of imports: only once a pair differs)

    before = {} if old is None else dict(zip(fields, old, strict=True))
    after = {} if new is None else dict(zip(fields, new, strict=True))
    # threshold_to_diff_deeper=0: always per key, even when one side is empty
    # (by default DeepDiff then reports the whole dict as one changed value).
    diff = DeepDiff(before, after, view="tree", threshold_to_diff_deeper=0)
    touched = {
        level.path(output_format="list")[0] for levels in diff.tree.values() for level in levels
    }
    return tuple((name, before.get(name), after.get(name)) for name in fields if name in touched)
