"""What a fault makes a simulated VM report instead of what the simulator derives.

Two faults of a real fabric: an operator renames a VM in the fabric
(`drctl fabric rename`), so that it reports another name, perhaps one another
VM reports too; and the fabric reports a protection state drctl does not know
(`drctl fabric raw-state`). Both live in the store's `overrides` table, one
row per VM that has one, keyed by the VM's inventory name, which the
simulator's own verbs keep using; its id (`store.vm_id`) never changes.

A Provider call names a VM as the fabric reports it (`row_reporting`): a
renamed VM answers to its new name only, and a name two VMs report is
refused, never resolved to either. `sim.observe` reads `overrides` once per
observation; `sim.provider` calls the rest.
"""

from __future__ import annotations

import re
import sqlite3
from typing import NamedTuple

from reconciler import errors
from reconciler.fabric.sim import store as sim_store

_NAME = re.compile(r"^\S+$")  # as an inventory VM's name


class Override(NamedTuple):
    """What a fault makes one VM report; None: what the simulator derives."""

    name: str | None
    raw_state: str | None
    raw_description: str | None


def overrides(db: sqlite3.Connection) -> dict[str, Override]:
    """Every VM's overrides, by its inventory name (few VMs have one)."""
    rows = db.execute("SELECT vm, name, raw_state, raw_description FROM overrides")
    return {vm: Override(name, raw, description) for vm, name, raw, description in rows}


def reported_names(db: sqlite3.Connection) -> dict[str, str]:
    """Inventory name -> the name it reports, for each VM renamed in the fabric."""
    return dict(db.execute("SELECT vm, name FROM overrides WHERE name IS NOT NULL"))


def set_reported_name(db: sqlite3.Connection, vm: str, name: str) -> None:
    """`vm` reports `name` from now on; its inventory name ends the rename."""
    if not _NAME.match(name):
        raise errors.UsageError(f"a VM's name is one word with no spaces, not {name!r}")
    db.execute(
        "INSERT INTO overrides (vm, name) VALUES (?, ?) "
        "ON CONFLICT (vm) DO UPDATE SET name = excluded.name",
        (vm, None if name == vm else name),
    )
    _drop_empty(db, vm)


def set_raw_state(
    db: sqlite3.Connection, vm: str, raw_state: str | None, description: str | None
) -> None:
    """`vm` reports the raw protection state `raw_state` (None: the one it derives)."""
    db.execute(
        "INSERT INTO overrides (vm, raw_state, raw_description) VALUES (?, ?, ?) "
        "ON CONFLICT (vm) DO UPDATE SET raw_state = excluded.raw_state, "
        "raw_description = excluded.raw_description",
        (vm, raw_state, None if raw_state is None else description),
    )
    _drop_empty(db, vm)


def _drop_empty(db: sqlite3.Connection, vm: str) -> None:
    db.execute("DELETE FROM overrides WHERE vm = ? AND name IS NULL AND raw_state IS NULL", (vm,))


def inventory_names(db: sqlite3.Connection, name: str) -> list[str]:
    """The inventory names of the VMs that report `name` now, in inventory order."""
    renamed = reported_names(db)
    candidates = [vm for vm, shown in renamed.items() if shown == name]
    if name not in renamed:
        candidates.append(name)
    found = [vm for vm in candidates if sim_store.vm_row(db, vm) is not None]
    return sorted(found, key=lambda vm: _rowid(db, vm)) if len(found) > 1 else found


def ids_reporting(db: sqlite3.Connection, name: str) -> tuple[str, ...]:
    """The ids of the VMs that report `name` now."""
    return tuple(_vm_id(db, vm) for vm in inventory_names(db, name))


def row_reporting(db: sqlite3.Connection, name: str) -> sim_store.VMRow:
    """The one VM that reports `name`, for a Provider call; TerminalError if none or several."""
    found = inventory_names(db, name)
    if len(found) > 1:
        ids = ", ".join(_vm_id(db, vm) for vm in found)
        raise errors.TerminalError(
            f"{len(found)} VMs are named '{name}' (ids {ids}): the fabric cannot tell which one "
            "is meant; rename all but one"
        )
    row = sim_store.vm_row(db, found[0]) if found else None
    if row is None:
        raise errors.TerminalError(
            f"no VM '{name}' in the simulated fabric: drctl fabric show lists its VMs"
        )
    return row


def _vm_id(db: sqlite3.Connection, vm: str) -> str:
    found = db.execute("SELECT vm_id FROM vms WHERE name = ?", (vm,)).fetchone()
    return str(found[0]) if found and found[0] else "(no id)"


def _rowid(db: sqlite3.Connection, vm: str) -> int:
    return int(db.execute("SELECT rowid FROM vms WHERE name = ?", (vm,)).fetchone()[0])
