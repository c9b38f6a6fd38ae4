"""Which VM of the fabric a spec entry pinned to an id means (`asrItem`), in an observation.

Two VMs with one name are reported apart (`Observed.duplicates`) and neither
is touched; an entry that names the fabric's own id of one of them
(`DesiredVM.vm_id`) means that one. `pinned` returns the observation with
each pinned name resolved to the VM of that id, or, when the id is not that
name's (no VM has it, or a VM of another name does), with the name in
`Observed.unpinned` and the reason: the planner then Blocks the entry and
moves nothing, even a VM the name alone would have found. `engine.fabrics`
applies it to every observation of a fabric; pure, idempotent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reconciler.core import state


def pinned(observed: state.Observed, pins: Mapping[str, str]) -> state.Observed:
    """`observed` with each name of `pins` resolved to the VM whose `vm_id` it gives."""
    if not pins:
        return observed
    vms = dict(observed.vms)
    duplicates = dict(observed.duplicates)
    unpinned = dict(observed.unpinned)
    by_id = {
        vm.vm_id: vm
        for vm in (*vms.values(), *(v for same in duplicates.values() for v in same))
        if vm.vm_id is not None
    }
    for name, vm_id in pins.items():
        found = by_id.get(vm_id)
        # Once pinned, the others of the name stay in `duplicates` beside it.
        named = ([vms[name]] if name in vms else []) + list(duplicates.get(name, ()))
        if found is not None and found.name == name:
            vms[name] = found
            others = tuple(vm for vm in named if vm.vm_id != vm_id)
            if others:
                duplicates[name] = others  # not meant by any entry: reported, never touched
            else:
                duplicates.pop(name, None)
            unpinned.pop(name, None)
            continue
        vms.pop(name, None)
        if found is not None:
            unpinned[name] = (
                f"asrItem '{vm_id}' is the item the fabric names '{found.name}', not '{name}': "
                "fix asrItem, or the VM's name"
            )
        else:
            ids = ", ".join(vm.vm_id or "(no id)" for vm in named) or "none"
            unpinned[name] = (
                f"asrItem '{vm_id}' names no item of the fabric; the items named '{name}' are "
                f"{ids}: set asrItem to one of them"
            )
    return dataclasses.replace(observed, vms=vms, duplicates=duplicates, unpinned=unpinned)
