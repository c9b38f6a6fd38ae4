"""The per-VM series of /metrics, kept as rendered text and re-rendered only where a VM changed.

`engine.metrics.Metrics` owns one `VMSeries`: `update` after each pass
with the plan it built (the daemon's thread), `pieces` when a scrape makes
the exposition (the endpoint's worker thread), `rows` for prometheus_client's
registry (`Metrics.registry`, which tests and the reference exposition read).

What each VM says is one `VMRow` of plain values. The rows live in blocks
of up to `BLOCK` VMs, in the order they first appeared; each block keeps,
per family, the text of its VMs' samples once a scrape has asked for it.
A pass compares each VM's new row with its last one (a tuple compare) and
replaces only the blocks where one differs, carrying over the text of
every family whose values did not change in that block; a VM that leaves
the plan leaves its block, so its series vanish. A scrape then joins, per
family, its HELP and TYPE lines and each block's text (rendering the few
blocks that are new), and hands those pieces to the endpoint, which writes
them as they are: at 100k VMs nothing is rendered twice, nothing copied
into one 40 MB string, and no step holds the GIL for long.

The pass swaps in a new tuple of blocks, never changing a block a scrape
may be reading; a block's text is filled at most once per family, the same
by whichever thread fills it. So a scrape never sees half of an update,
and neither waits for the other.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from typing import NamedTuple

from reconciler.core import plan, state
from reconciler.core.plan import Phase
from reconciler.core.state import Operation, ReplicationState

VM_CONVERGED = "drctl_vm_converged"
VM_BLOCKED = "drctl_vm_blocked"
VM_HELD = "drctl_vm_held"
VM_STUCK = "drctl_vm_stuck"
VM_SUSPENDED = "drctl_vm_suspended"
VM_RUNNING = "drctl_vm_running"
VM_COPIES_RUNNING = "drctl_vm_copies_running"
VM_INFO = "drctl_vm_info"
REPLICATION_LAST_SYNC_TIMESTAMP_SECONDS = "drctl_replication_last_sync_timestamp_seconds"
REPLICATION_INTERVAL_SECONDS = "drctl_replication_interval_seconds"

HELP = {
    VM_CONVERGED: "Whether the VM is converged: placed and protected (1) or not (0).",
    VM_BLOCKED: (
        "Whether the VM is Blocked (1): drctl cannot go on without a human; "
        "the reason is in `drctl status` and the logs."
    ),
    VM_HELD: (
        "Whether the VM is Held (1): the fabric changed outside drctl, or a step would "
        "destroy writes; `drctl status` says what to commit."
    ),
    VM_STUCK: (
        "Whether a job of the VM runs past its deadline (1, policy.deadlines): followed, "
        "never cancelled; `drctl status` names the job and how long it has run."
    ),
    VM_SUSPENDED: "Whether the VM's plan is suspended (1, spec.suspend): drctl starts nothing.",
    VM_RUNNING: (
        "Whether a copy of the VM is known to run (1: at its desired site, or still at "
        "the source of a move), no copy runs anywhere (0), or the fabric cannot tell "
        "(NaN: no copy is known to run and the power of a site is Unknown)."
    ),
    VM_COPIES_RUNNING: (
        "How many sites a copy of the VM is known to run at (test-failover copies not "
        "counted): 2 is a split brain; NaN when the fabric could not be observed."
    ),
    VM_INFO: "The VM's desired site, observed active site and replication, and phase.",
    REPLICATION_LAST_SYNC_TIMESTAMP_SECONDS: (
        "Unix time of the VM's last replication sync; only while the spec wants "
        "replication and it runs that way, outside failovers."
    ),
    REPLICATION_INTERVAL_SECONDS: (
        "The VM's replication interval; only while the spec wants replication and it "
        "runs that way, outside failovers."
    ),
}

# VMs per block: a changed VM costs a scrape the text of this many (a few
# hundred microseconds per family), and a 100k-VM exposition is about a
# thousand pieces.
BLOCK = 1024

# Jobs during which the VM's replication is being torn down, reversed or set
# up: its last sync says nothing about the RPO then.
_REPLICATION_CHANGING_JOBS = state.FAILOVERS | {
    Operation.APPLY_RECOVERY_POINT,
    Operation.COMMIT,
    Operation.REVERSE_REPLICATE,
    Operation.ENABLE_REPLICATION,
    Operation.DISABLE_REPLICATION,
}
# Replication states with a recovery point in the desired direction whose age
# is the RPO. Not InitialSync: there is no replica yet (a reprotect after an
# unplanned failover is a full copy that takes as long as it takes, and the
# VM's phase, Syncing, says so); not Off. ResyncRequired, Paused and Error
# stay in: replication is configured but not shipping, which is exactly when
# the RPO alert must fire.
_RPO_STATES = frozenset(
    {
        ReplicationState.REPLICATING,
        ReplicationState.RESYNC_REQUIRED,
        ReplicationState.PAUSED,
        ReplicationState.ERROR,
    }
)


class VMRow(NamedTuple):
    """What one VM's series say after a pass."""

    plan: str
    vm: str
    desired_site: str
    active_site: str  # "" when the VM is not in the fabric
    replication: str  # as observed: "<from>-><to>", "off", or "" when not in the fabric
    phase: str
    converged: float
    blocked: float
    held: float
    stuck: float
    suspended: float
    running: float  # 1, 0, or NaN: see `vm_running`
    copies: float  # sites where a copy is known to run, or NaN: see `vm_copies_running`
    last_sync: float | None  # Unix time; None: no replication series (`rpo_replication`)
    interval: float | None


def rpo_replication(vp: plan.VMPlan) -> state.Replication | None:
    """The VM's replication whose last sync is its RPO, or None: no replication series then.

    Only while the spec wants replication on, the fabric replicates in that
    direction in a state with a recovery point (see `_RPO_STATES`), and no
    job is changing the VM's replication (a failover, commit, reprotect,
    enable or disable). So `time() - last_sync` alerts stay silent during a
    failover and with replication off, and fire when replication stalls.
    """
    o = vp.observed
    if o is None or o.replication is None or vp.desired.replication is None:
        return None
    rep = o.replication
    if (rep.source, rep.target) != vp.desired.replication or rep.state not in _RPO_STATES:
        return None
    if o.job is not None and o.job.running and o.job.operation in _REPLICATION_CHANGING_JOBS:
        return None
    return rep


def vm_running(vp: plan.VMPlan) -> float:
    """`drctl_vm_running`: 1 when a copy is known to run, 0 when none runs, NaN when unknown.

    A VM its fabric did not report although the fabric answered has no copy
    running (0); one whose fabric could not be observed is unknown.
    """
    o = vp.observed
    if o is None:
        return 0.0 if vp.fabric_observed else math.nan
    if o.running:
        return 1.0
    return math.nan if o.power_unknown else 0.0


def vm_copies_running(vp: plan.VMPlan) -> float:
    """`drctl_vm_copies_running`: the sites where a copy is known to run; more than 1 is a
    split brain. A site whose power is Unknown is not counted (`drctl_vm_running` is
    NaN then); NaN when the VM's fabric could not be observed."""
    o = vp.observed
    if o is None:
        return 0.0 if vp.fabric_observed else math.nan
    return float(len(o.running))


def vm_row(vp: plan.VMPlan) -> VMRow:
    """The row of one VM of a pass's plan."""
    d, o, phase = vp.desired, vp.observed, vp.phase
    rep = rpo_replication(vp)
    return VMRow(
        d.plan,
        d.name,
        d.active_site,
        "" if o is None else o.active_site,
        "" if o is None else o.replication_text,
        phase.value,
        1.0 if vp.placed and vp.protected else 0.0,
        1.0 if phase is Phase.BLOCKED else 0.0,
        1.0 if phase is Phase.HELD else 0.0,
        1.0 if phase is Phase.STUCK else 0.0,
        1.0 if phase is Phase.SUSPENDED else 0.0,
        vm_running(vp),
        vm_copies_running(vp),
        None if rep is None or rep.last_sync is None else rep.last_sync.timestamp(),
        None if rep is None else rep.interval_seconds,
    )


# --- the text format -------------------------------------------------------------------


def _escape(value: str) -> str:
    """A label value as the text format writes it (backslash, newline, double quote)."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


_NUMBERS = {0.0: "0.0", 1.0: "1.0", 2.0: "2.0"}


def _number(value: float) -> str:
    """A sample value as the text format writes it: Prometheus reads Python's float repr."""
    text = _NUMBERS.get(value)
    if text is not None:
        return text
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _header(name: str) -> bytes:
    text = HELP[name].replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {text}\n# TYPE {name} gauge\n".encode()


def _value_lines(
    name: str, value: Callable[[VMRow], float | None]
) -> Callable[[tuple[str, ...], tuple[VMRow, ...]], str]:
    """The text of a family whose sample is `value(row)`: none where that is None."""

    def render(labels: tuple[str, ...], rows: tuple[VMRow, ...]) -> str:
        return "".join(
            [
                f"{name}{{{label}}} {_number(v)}\n"
                for label, row in zip(labels, rows, strict=True)
                if (v := value(row)) is not None
            ]
        )

    return render


def _info_lines(labels: tuple[str, ...], rows: tuple[VMRow, ...]) -> str:
    # Label names sorted, as prometheus_client writes them.
    return "".join(
        [
            f'{VM_INFO}{{active_site="{_escape(r.active_site)}",'
            f'desired_site="{_escape(r.desired_site)}",phase="{_escape(r.phase)}",'
            f'{label},replication="{_escape(r.replication)}"}} 1.0\n'
            for label, r in zip(labels, rows, strict=True)
        ]
    )


class Family(NamedTuple):
    """One per-VM family: how a row becomes its sample, and its samples' text."""

    name: str
    header: bytes
    fields: tuple[int, ...]  # the row fields its samples show: unchanged, its text stays
    value: Callable[[VMRow], float | None]  # the sample's value; None: no sample
    render: Callable[[tuple[str, ...], tuple[VMRow, ...]], str]


def _value_family(name: str, field: str) -> Family:
    index = VMRow._fields.index(field)
    value: Callable[[VMRow], float | None] = operator.itemgetter(index)
    return Family(name, _header(name), (index,), value, _value_lines(name, value))


def _one(_row: VMRow) -> float:
    return 1.0


_INFO_FIELDS = ("desired_site", "active_site", "replication", "phase")

# In the order of the exposition (and of prometheus_client's collect, in engine/metrics.py).
FAMILIES = (
    _value_family(VM_CONVERGED, "converged"),
    _value_family(VM_BLOCKED, "blocked"),
    _value_family(VM_HELD, "held"),
    _value_family(VM_STUCK, "stuck"),
    _value_family(VM_SUSPENDED, "suspended"),
    _value_family(VM_RUNNING, "running"),
    _value_family(VM_COPIES_RUNNING, "copies"),
    Family(
        VM_INFO,
        _header(VM_INFO),
        tuple(VMRow._fields.index(f) for f in _INFO_FIELDS),
        _one,
        _info_lines,
    ),
    _value_family(REPLICATION_LAST_SYNC_TIMESTAMP_SECONDS, "last_sync"),
    _value_family(REPLICATION_INTERVAL_SECONDS, "interval"),
)


class _Block:
    """Up to `BLOCK` VMs' rows, and per family the text of their samples once asked for.

    Never changed once a pass has published it, but for `texts`, each filled
    at most once, with the same text whichever thread fills it, and `vms`,
    which only the updater reads.
    """

    __slots__ = ("labels", "rows", "texts", "vms")

    def __init__(
        self,
        rows: tuple[VMRow, ...],
        vms: list[plan.VMPlan],
        labels: tuple[str, ...] | None = None,
        texts: list[bytes | None] | None = None,
    ) -> None:
        self.rows = rows
        # The VMPlan each row was made of: a planner that hands the same one
        # again (nothing changed for that VM) costs no row.
        self.vms = vms
        self.labels = labels if labels is not None else tuple(map(_vm_labels, rows))
        self.texts: list[bytes | None] = texts if texts is not None else [None] * len(FAMILIES)

    def text(self, family: int) -> bytes:
        made = self.texts[family]
        if made is None:
            made = FAMILIES[family].render(self.labels, self.rows).encode()
            self.texts[family] = made
        return made


def _vm_labels(row: VMRow) -> str:
    return f'plan="{_escape(row.plan)}",vm="{_escape(row.vm)}"'


def _changed_block(old: _Block, changes: dict[int, VMRow]) -> _Block:
    """`old` with some rows replaced: the text of every family none of them changed stays."""
    rows = list(old.rows)
    texts = list(old.texts)
    for i, row in changes.items():
        before = rows[i]
        rows[i] = row
        for f, family in enumerate(FAMILIES):
            if texts[f] is not None and any(before[k] != row[k] for k in family.fields):
                texts[f] = None
    return _Block(tuple(rows), old.vms, old.labels, texts)


class VMSeries:
    """Every VM's series, updated from each pass's plan; read by scrapes on any thread."""

    def __init__(self, block: int = BLOCK) -> None:
        self._block = block  # VMs per block (tests make it small)
        self._blocks: tuple[_Block, ...] = ()  # published: replaced whole by `update`
        # (plan, vm) -> (block, position) in `_blocks`: the updater's alone.
        self._where: dict[tuple[str, str], tuple[int, int]] = {}
        self.plans: tuple[tuple[str, bool, bool], ...] = ()  # (name, placed, converged)

    def update(self, built: plan.Plan) -> None:
        """Take this pass's plan: replace the blocks in which a VM changed, came or went."""
        blocks, where = self._blocks, self._where
        changes: dict[int, dict[int, VMRow]] = {}
        added: list[tuple[VMRow, plan.VMPlan]] = []
        plans: dict[str, tuple[bool, bool]] = {}
        known = 0
        for vp in built.vms:
            d = vp.desired
            placed, converged = plans.get(d.plan, (True, True))
            plans[d.plan] = (placed and vp.placed, converged and vp.placed and vp.protected)
            at = where.get((d.plan, d.name))
            if at is None:
                added.append((vm_row(vp), vp))
                continue
            known += 1
            b, i = at
            block = blocks[b]
            if block.vms[i] is vp:
                continue
            block.vms[i] = vp
            row = vm_row(vp)
            # NaN is math.nan itself in every row, and a tuple compares
            # identical members equal: an unknown VM is not a change.
            if block.rows[i] != row:
                changes.setdefault(b, {})[i] = row
        new = list(blocks)
        for b, changed in changes.items():
            new[b] = _changed_block(blocks[b], changed)
        if known < len(where):
            self._drop_gone(new, built)
        self._add(new, added)
        if len(new) > 2 * (len(self._where) // self._block + 1):
            new = self._compact(new)
        self._blocks = tuple(new)
        self.plans = tuple((name, p, c) for name, (p, c) in plans.items())

    def _drop_gone(self, blocks: list[_Block], built: plan.Plan) -> None:
        """Take the VMs no longer in the plan out of their blocks: their series vanish."""
        present = {(vp.desired.plan, vp.desired.name) for vp in built.vms}
        gone_from: dict[int, set[int]] = {}
        for key in self._where.keys() - present:
            b, i = self._where.pop(key)
            gone_from.setdefault(b, set()).add(i)
        for b, positions in gone_from.items():
            old = blocks[b]
            kept = [i for i in range(len(old.rows)) if i not in positions]
            blocks[b] = _Block(
                tuple(old.rows[i] for i in kept),
                [old.vms[i] for i in kept],
                tuple(old.labels[i] for i in kept),
            )
            for i, row in enumerate(blocks[b].rows):
                self._where[row.plan, row.vm] = (b, i)

    def _add(self, blocks: list[_Block], added: list[tuple[VMRow, plan.VMPlan]]) -> None:
        """Put new VMs in the last block while it has room, then in new blocks."""
        if not added:
            return
        if blocks and len(blocks[-1].rows) < self._block:
            last = blocks.pop()  # made anew, its text too
            added = [*zip(last.rows, last.vms, strict=True), *added]
        for start in range(0, len(added), self._block):
            part = added[start : start + self._block]
            block = _Block(tuple(row for row, _ in part), [vp for _, vp in part])
            b = len(blocks)
            for i, row in enumerate(block.rows):
                self._where[row.plan, row.vm] = (b, i)
            blocks.append(block)

    def _compact(self, blocks: list[_Block]) -> list[_Block]:
        """Blocks emptied by VMs that left, packed again (their text made anew)."""
        self._where = {}
        packed: list[_Block] = []
        self._add(packed, [pair for b in blocks for pair in zip(b.rows, b.vms, strict=True)])
        return packed

    # --- read by scrapes, on any thread ---------------------------------------------

    def pieces(self) -> Iterator[bytes]:
        """Every per-VM family's exposition: its HELP and TYPE lines, then each block's text."""
        blocks = self._blocks  # one read: a pass may publish new blocks meanwhile
        for f, family in enumerate(FAMILIES):
            yield family.header
            for block in blocks:
                yield block.text(f)

    def rows(self) -> Iterator[VMRow]:
        """Every VM's row, as of the last pass."""
        for block in self._blocks:
            yield from block.rows
