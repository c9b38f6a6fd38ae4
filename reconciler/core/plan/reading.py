"""Why the planner cannot read a VM the fabric reports: what its Blocked reason says.

Two cases, both Blocked until a person acts in the fabric, never guessed
around: a protection state whose raw text drctl does not know (a provider
maps only what it knows and reports the rest as `ProtectionState.UNKNOWN`
with the text), and a name that two or more VMs of the fabric report (each
with its own id). Called by `plan.decide`; pure.
"""

from __future__ import annotations

from reconciler.core import state


def unknown_state(o: state.ObservedVM) -> str:
    """The reason for a VM whose raw protection state maps to no state drctl knows."""
    if o.raw_state is None:
        said = "a protection state with no text"
    else:
        described = f" ({o.raw_state_description})" if o.raw_state_description else ""
        said = f"protection state '{o.raw_state}'{described}"
    return (
        f"the fabric reports {said} that drctl does not know; nothing is done to this VM "
        "until it reads a known state; check it in the fabric"
    )


def duplicate_name(name: str, vms: tuple[state.ObservedVM, ...]) -> str:
    """The reason for a desired VM whose name several VMs of the fabric report."""
    ids = ", ".join(vm.vm_id or "(no id)" for vm in vms)
    return (
        f"{len(vms)} VMs of the fabric are named '{name}' (ids {ids}): drctl never guesses "
        f"which one the spec means and does nothing to either; rename all but one in the "
        "fabric"
    )
