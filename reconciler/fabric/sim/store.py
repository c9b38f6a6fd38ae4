"""SQLite storage of the simulated fabric: `fabric.db` in its directory, shared by processes.

The directory is the caller's to choose (engine/state_dir.py names it: the
state dir itself for the embedded simulator); this module names the file in it.

Only the simulator uses it: `sim.provider`, and `sim.observe` to read rows. A
daemon and CLI calls open the same file at once, so the database runs in WAL
mode (readers never wait for the writer), every read-modify-write runs in
`BEGIN IMMEDIATE` (two processes cannot both decide from the same state) and
a busy timeout makes a second writer wait instead of failing. VM state lives
in columns so that an observation of 100k VMs is one scan, and the running
jobs have a partial index of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from reconciler import errors
from reconciler.fabric.sim import timing

DB_NAME = "fabric.db"
BUSY_TIMEOUT_SECONDS = 30.0

_TIMING_COLUMNS = (
    "planned_failover",
    "unplanned_failover",
    "commit_seconds",
    "reverse_replicate",
    "initial_replication",
    "stop_vm",
    "test_failover",
    "test_failover_cleanup",
    "replication_interval",
    "replication_mbps",
)

# `SimFabric.inject_call_error`: the next `remaining` calls of a Provider
# method (`*` for any) raise an error instead of reaching the fabric; `vm`
# narrows a `start` fault to one VM. Created on open too: a fabric made
# before call faults existed has none.
_CALL_FAULTS = """
CREATE TABLE IF NOT EXISTS call_faults (
    id INTEGER PRIMARY KEY,
    call TEXT NOT NULL,
    vm TEXT,
    error TEXT NOT NULL,
    remaining INTEGER NOT NULL,
    retry_after REAL
)
"""

# `drctl fabric partition SITE`: drctl cannot reach the site's management
# plane while a partition has no end (its VMs go on). Past ones stay, as
# outages do: a job fails if one of its sites was cut off while it ran.
# Created on open too: a fabric made before partitions existed has none.
_PARTITIONS = """
CREATE TABLE IF NOT EXISTS partitions (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    start_at REAL NOT NULL,
    end_at REAL
)
"""
# `SimFabric.suspend_next`: the next `remaining` jobs of `operation` on `vm`
# suspend half-way, waiting for a person (`SimFabric.resume`).
_SUSPENSIONS = """
CREATE TABLE IF NOT EXISTS suspensions (
    vm TEXT NOT NULL,
    operation TEXT NOT NULL,
    remaining INTEGER NOT NULL,
    PRIMARY KEY (vm, operation)
)
"""
_JOBS_SUSPENDED = """
CREATE INDEX IF NOT EXISTS jobs_suspended ON jobs (id) WHERE state = 'Suspended'
"""
# What a fault makes a VM report instead of what the simulator derives:
# `drctl fabric rename` (name: the name it reports; NULL, its inventory name)
# and `drctl fabric raw-state` (raw_state, raw_description: an unknown state).
# A row lives while one of them is set; few VMs have one.
_OVERRIDES = """
CREATE TABLE IF NOT EXISTS overrides (
    vm TEXT PRIMARY KEY,
    name TEXT,
    raw_state TEXT,
    raw_description TEXT
)
"""

# Tables and indexes added after the first fabrics were made, by name.
_ADDED_TABLES = {
    "call_faults": _CALL_FAULTS,
    "suspensions": _SUSPENSIONS,
    "jobs_suspended": _JOBS_SUSPENDED,
    "partitions": _PARTITIONS,
    "overrides": _OVERRIDES,
}
# Columns added after the first fabrics were made: `Store.open` adds those a
# fabric lacks, with these declarations (the defaults keep what older fabrics did).
_ADDED_COLUMNS = (
    ("fabric", "replication_mbps", f"REAL NOT NULL DEFAULT {timing.Timings().replication_mbps!r}"),
    ("vms", "size_gb", "REAL"),
    ("vms", "rp_applied", "REAL"),
    ("jobs", "duration", "REAL"),
    ("jobs", "paused", "REAL NOT NULL DEFAULT 0"),
    ("jobs", "suspended_at", "REAL"),
    ("jobs", "suspends", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "fails_after_shutdown", "INTEGER NOT NULL DEFAULT 0"),
    ("failures", "after_shutdown", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "intent_id", "TEXT"),
    ("vms", "vm_id", "TEXT"),  # filled by `Store.open` (see vm_id)
)

# One statement per string: executescript() would commit the caller's transaction.
_SCHEMA = (
    f"""
CREATE TABLE fabric (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    created_at REAL NOT NULL,
    {", ".join(f"{c} REAL NOT NULL" for c in _TIMING_COLUMNS)}
)
""",
    """
CREATE TABLE sites (
    position INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
)
""",
    """
-- A site is disconnected while it has an outage with no end. Past outages
-- stay: a job fails if one of its sites went down while it ran.
CREATE TABLE outages (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    down_at REAL NOT NULL,
    up_at REAL
)
""",
    """
-- Times are seconds since the epoch (UTC). The last sync and the recovery
-- points are derived from sync_anchor at read time (fabric/sim/timeline.py), so an
-- observation writes nothing.
CREATE TABLE vms (
    name TEXT NOT NULL UNIQUE,
    active_site TEXT NOT NULL,
    active_running INTEGER NOT NULL,
    peer_running INTEGER NOT NULL,     -- a stale copy still runs at the other site
    protection TEXT NOT NULL,
    replication TEXT NOT NULL,
    last_failover TEXT,
    test_failover TEXT NOT NULL,
    job_id INTEGER,                    -- the running job
    sync_anchor REAL,
    lag REAL NOT NULL DEFAULT 0,       -- `drctl fabric lag`: replication ships this far behind
    resync_from REAL,                  -- `drctl fabric resync-required`: shipping stopped then
    resync_until REAL,                 -- ... and the fabric's own resync ends then
    writes_stopped_at REAL,            -- the active copy was stopped then
    rp_latest REAL,                    -- recovery points kept after a failover, until Commit
    rp_oldest REAL,
    written_until REAL,                -- the source's last write before the failover
    size_gb REAL,                      -- the inventory's sizeGB: a full copy takes its time
    rp_applied REAL,                   -- the point the failed-over copy booted, until Commit
    -- Every column above but the name, as one string: an observation reads
    -- (name, state_key) and computes each distinct state once.
    state_key TEXT NOT NULL,
    vm_id TEXT                         -- the stable id reported beside the name (vm_id())
)
""",
    """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL,
    operation TEXT NOT NULL,
    state TEXT NOT NULL,
    target_site TEXT,
    started_at REAL NOT NULL,
    due_at REAL NOT NULL,
    finished_at REAL,
    error TEXT,
    data_loss REAL,                    -- decided at the start, reported when it succeeds
    recovery_point REAL,               -- the point a failover or ApplyRecoveryPoint boots
    source_stopped INTEGER NOT NULL DEFAULT 0,
    injected_error TEXT,               -- `drctl fabric fail`: the job fails with this
    written_until REAL,                -- a failover's source took its last write then
    -- due_at is the job's next event: its end, or (suspends = 1) the moment
    -- half-way through its work when it suspends; `duration` seconds of work
    -- in all, `paused` seconds spent suspended so far, suspended since
    -- `suspended_at` while Suspended. fails_after_shutdown: `fail --after-shutdown`.
    duration REAL,
    paused REAL NOT NULL DEFAULT 0,
    suspended_at REAL,
    suspends INTEGER NOT NULL DEFAULT 0,
    fails_after_shutdown INTEGER NOT NULL DEFAULT 0,
    intent_id TEXT                     -- the request's `intent_id`, kept as ASR keeps it
)
""",
    """
CREATE INDEX jobs_running ON jobs (due_at) WHERE state = 'Running'
""",
    _JOBS_SUSPENDED,
    """
CREATE TABLE failures (
    vm TEXT NOT NULL,
    operation TEXT NOT NULL,
    remaining INTEGER NOT NULL,
    -- 1: a planned failover fails after its shutdown step (`fail --after-shutdown`)
    after_shutdown INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vm, operation)
)
""",
    _CALL_FAULTS,
    _SUSPENSIONS,
    _PARTITIONS,
    _OVERRIDES,
)

_TABLES = (
    "overrides",
    "partitions",
    "suspensions",
    "call_faults",
    "failures",
    "jobs",
    "vms",
    "outages",
    "sites",
    "fabric",
)


class VMRow(NamedTuple):
    """One VM as stored (the `vms` table without its state_key)."""

    name: str
    active_site: str
    active_running: int
    peer_running: int
    protection: str
    replication: str
    last_failover: str | None
    test_failover: str
    job_id: int | None
    sync_anchor: float | None
    lag: float
    resync_from: float | None
    resync_until: float | None
    writes_stopped_at: float | None
    rp_latest: float | None
    rp_oldest: float | None
    written_until: float | None
    size_gb: float | None = None
    rp_applied: float | None = None

    @property
    def state_key(self) -> str:
        """Every column but the name: VMs with equal keys are observed alike."""
        return repr(self[1:])


class JobRow(NamedTuple):
    """One row of the `jobs` table."""

    id: int
    vm: str
    operation: str
    state: str
    target_site: str | None
    started_at: float
    due_at: float
    finished_at: float | None
    error: str | None
    data_loss: float | None
    recovery_point: float | None
    source_stopped: int
    injected_error: str | None
    written_until: float | None
    duration: float | None = None
    paused: float = 0.0
    suspended_at: float | None = None
    suspends: int = 0
    fails_after_shutdown: int = 0
    intent_id: str | None = None

    @property
    def work(self) -> float:
        """Seconds of work the job does, suspensions left out."""
        return self.due_at - self.started_at if self.duration is None else self.duration


_VM_COLUMNS = ", ".join(VMRow._fields)
# Built from constant column lists, never from input.
_SELECT_VM = f"SELECT {_VM_COLUMNS} FROM vms WHERE name = ?"  # noqa: S608
_INSERT_VM = (
    f"INSERT INTO vms ({_VM_COLUMNS}, state_key, vm_id) "  # noqa: S608
    f"VALUES ({', '.join('?' * (len(VMRow._fields) + 2))})"
)
_SELECT_JOBS = f"SELECT {', '.join(JobRow._fields)} FROM jobs "  # noqa: S608
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(JobRow._fields[1:])}) "  # noqa: S608
    f"VALUES ({', '.join('?' * (len(JobRow._fields) - 1))})"
)
_UPDATE_VM = (
    f"UPDATE vms SET {', '.join(f'{c} = ?' for c in VMRow._fields[1:])}, "  # noqa: S608
    "state_key = ? WHERE name = ?"
)
_INSERT_FABRIC = (
    f"INSERT INTO fabric (id, created_at, {', '.join(_TIMING_COLUMNS)}) "  # noqa: S608
    f"VALUES (1, ?, {', '.join('?' * len(_TIMING_COLUMNS))})"
)
_SELECT_TIMINGS = f"SELECT {', '.join(_TIMING_COLUMNS)} FROM fabric"  # noqa: S608

NOT_INITIALISED = "run drctl fabric init INVENTORY.yaml first"


class Store:
    """One connection to a fabric database, with read and write transactions."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        """Open the fabric of `state_dir`; TerminalError if there is none."""
        path = state_dir / DB_NAME
        if not path.is_file():
            raise errors.NoSimulatedFabricError(
                f"no simulated fabric in {state_dir}: {NOT_INITIALISED}", str(state_dir)
            )
        store = cls(path, _connect(path, create=False))
        with store.read() as db:
            found = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'fabric'").fetchone()
            missing = _missing_schema(db)
        if found is None:
            store.close()
            raise errors.NoSimulatedFabricError(
                f"no simulated fabric in {state_dir}: {NOT_INITIALISED}", str(state_dir)
            )
        if missing:
            # A fabric made by an older drctl: it gets what it lacks, with
            # the defaults that keep its behaviour (no fault of a newer kind),
            # and ids for its VMs, as init would have given them.
            with store.write() as db:
                for statement in _missing_schema(db):
                    db.execute(statement)
                _fill_vm_ids(db)
        return store

    @classmethod
    def create(cls, state_dir: Path) -> tuple[Store, bool]:
        """Open (creating) the database of `state_dir`; True if it held a fabric already."""
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise errors.TerminalError(f"cannot create state directory {state_dir}: {exc}") from exc
        path = state_dir / DB_NAME
        conn = _connect(path, create=True)
        try:
            # WAL is a property of the file: set once here, every process gets it.
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            conn.close()
            raise errors.TerminalError(f"cannot use {path}: {exc}") from exc
        store = cls(path, conn)
        with store.read() as db:
            existed = (
                db.execute("SELECT 1 FROM sqlite_master WHERE name = 'fabric'").fetchone()
                is not None
            )
        return store, existed

    def reset(
        self, db: sqlite3.Connection, sites: tuple[str, str], timings: timing.Timings, now: float
    ) -> None:
        """Replace whatever fabric the database held by an empty one (inside `write`)."""
        for table in _TABLES:
            db.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute(_INSERT_FABRIC, (now, *dataclasses.astuple(timings)))
        db.executemany("INSERT INTO sites (position, name) VALUES (?, ?)", enumerate(sites))

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot across several SELECTs; never blocks a writer."""
        with self._transaction("BEGIN") as db:
            yield db

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The write lock for a read-modify-write; other writers wait (busy timeout)."""
        with self._transaction("BEGIN IMMEDIATE") as db:
            yield db

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute(begin)
        except sqlite3.OperationalError as exc:
            raise errors.TransientError(f"fabric database {self.path} is busy: {exc}") from exc
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self.conn.execute("ROLLBACK")
            raise errors.TransientError(f"fabric database {self.path} is busy: {exc}") from exc


def _missing_schema(db: sqlite3.Connection) -> list[str]:
    """The statements that bring a fabric made by an older drctl up to date."""
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    statements = [sql for name, sql in _ADDED_TABLES.items() if name not in names]
    columns: dict[str, set[str]] = {}
    for table, column, declaration in _ADDED_COLUMNS:
        if table not in columns:
            columns[table] = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns[table]:
            statements.append(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
    return statements


def vm_id(created_at: float, name: str) -> str:
    """The id of VM `name` in the fabric created at `created_at`: stable, unique, GUID-shaped.

    Like the ids of a real fabric (ASR's protected item names, Hyper-V's
    VMId), it never changes with the name; a fabric made again gets new ones.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"drctl-sim:{created_at!r}:{name}"))


def _fill_vm_ids(db: sqlite3.Connection) -> None:
    created_at = db.execute("SELECT created_at FROM fabric").fetchone()[0]
    names = [row[0] for row in db.execute("SELECT name FROM vms WHERE vm_id IS NULL")]
    db.executemany(
        "UPDATE vms SET vm_id = ? WHERE name = ?", ((vm_id(created_at, n), n) for n in names)
    )


def created_at(db: sqlite3.Connection) -> float:
    return float(db.execute("SELECT created_at FROM fabric").fetchone()[0])


def timings(db: sqlite3.Connection) -> timing.Timings:
    return timing.Timings(*db.execute(_SELECT_TIMINGS).fetchone())


def sites(db: sqlite3.Connection) -> tuple[str, str]:
    rows = db.execute("SELECT name FROM sites ORDER BY position").fetchall()
    return rows[0][0], rows[1][0]


def outages_at(db: sqlite3.Connection, t: float) -> dict[str, float]:
    """The sites that were disconnected at `t`, and since when."""
    rows = db.execute(
        "SELECT site, down_at FROM outages WHERE down_at <= ? AND (up_at IS NULL OR up_at > ?)",
        (t, t),
    ).fetchall()
    return dict(rows)


def partitions_at(db: sqlite3.Connection, t: float) -> dict[str, float]:
    """The sites whose management plane was cut off at `t`, and since when."""
    rows = db.execute(
        "SELECT site, start_at FROM partitions "
        "WHERE start_at <= ? AND (end_at IS NULL OR end_at > ?)",
        (t, t),
    ).fetchall()
    return dict(rows)


def vm_row(db: sqlite3.Connection, name: str) -> VMRow | None:
    found = db.execute(_SELECT_VM, (name,)).fetchone()
    return None if found is None else VMRow(*found)


def vm_keys(db: sqlite3.Connection) -> list[tuple[str, str, str | None]]:
    """(name, state_key, vm_id) of every VM, in inventory order."""
    return db.execute("SELECT name, state_key, vm_id FROM vms ORDER BY rowid").fetchall()


def insert_vms(db: sqlite3.Connection, rows: Iterable[VMRow], created_at: float) -> None:
    """Insert new VMs, each with its id (`vm_id`) in the fabric created at `created_at`."""
    db.executemany(_INSERT_VM, ((*row, row.state_key, vm_id(created_at, row.name)) for row in rows))


def save_vm(db: sqlite3.Connection, row: VMRow) -> None:
    """Write every column of `row`: the one way a VM changes, so state_key stays true."""
    db.execute(_UPDATE_VM, (*row[1:], row.state_key, row.name))


def jobs(db: sqlite3.Connection) -> list[JobRow]:
    """Every job, in start order."""
    return [JobRow(*r) for r in db.execute(_SELECT_JOBS + "ORDER BY id")]


def last_failovers(db: sqlite3.Connection) -> dict[str, tuple[int, float, float | None]]:
    """Each VM's last failover that succeeded: (job number, when it finished, data lost).

    The data lost is that of a later ApplyRecoveryPoint when one succeeded:
    the copy then runs from that point.
    """
    rows = db.execute(
        "SELECT vm, id, finished_at, data_loss, operation FROM jobs WHERE state = 'Succeeded' "
        "AND operation IN ('PlannedFailover', 'UnplannedFailover', 'ApplyRecoveryPoint') "
        "ORDER BY id"
    )
    found: dict[str, tuple[int, float, float | None]] = {}
    for vm, number, finished, loss, operation in rows:
        if operation != "ApplyRecoveryPoint":
            found[vm] = (number, finished, loss)
        elif vm in found:
            found[vm] = (*found[vm][:2], loss)
    return found


def running_jobs(db: sqlite3.Connection) -> list[JobRow]:
    """The jobs not over yet, Running or Suspended, in start order (one index each)."""
    rows = [JobRow(*r) for r in db.execute(_SELECT_JOBS + "WHERE state = 'Running'")]
    rows += [JobRow(*r) for r in db.execute(_SELECT_JOBS + "WHERE state = 'Suspended'")]
    return sorted(rows, key=lambda row: row.id)


def due_jobs(db: sqlite3.Connection, t: float) -> list[JobRow]:
    """Running jobs due at `t`, in the order they end."""
    return [
        JobRow(*r)
        for r in db.execute(
            _SELECT_JOBS + "WHERE state = 'Running' AND due_at <= ? ORDER BY due_at, id", (t,)
        )
    ]


def any_job_due(db: sqlite3.Connection, t: float) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM jobs WHERE state = 'Running' AND due_at <= ? LIMIT 1", (t,)
        ).fetchone()
        is not None
    )


def job_row(db: sqlite3.Connection, number: int) -> JobRow | None:
    found = db.execute(_SELECT_JOBS + "WHERE id = ?", (number,)).fetchone()
    return None if found is None else JobRow(*found)


def insert_job(db: sqlite3.Connection, job: JobRow) -> int:
    """Insert `job` (its id is ignored) and return the id it got."""
    number = db.execute(_INSERT_JOB, job[1:]).lastrowid
    assert number is not None  # noqa: S101 (an INSERT always sets it)
    return number


def end_job(
    db: sqlite3.Connection, number: int, state: str, finished_at: float, error: str | None
) -> None:
    db.execute(
        "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
        (state, finished_at, error, number),
    )


def start_outage(db: sqlite3.Connection, site: str, t: float) -> None:
    db.execute("INSERT INTO outages (site, down_at) VALUES (?, ?)", (site, t))


def end_outage(db: sqlite3.Connection, site: str, t: float) -> None:
    db.execute("UPDATE outages SET up_at = ? WHERE site = ? AND up_at IS NULL", (t, site))


def start_partition(db: sqlite3.Connection, site: str, t: float) -> None:
    db.execute("INSERT INTO partitions (site, start_at) VALUES (?, ?)", (site, t))


def end_partition(db: sqlite3.Connection, site: str, t: float) -> None:
    db.execute("UPDATE partitions SET end_at = ? WHERE site = ? AND end_at IS NULL", (t, site))


def first_outage(
    db: sqlite3.Connection, sites: Iterable[str], start: float, end: float
) -> tuple[str, float] | None:
    """The first outage of one of `sites` that overlaps [start, end]: (site, down_at)."""
    return _first_cut(db, "outages", "down_at", "up_at", sites, start, end)


def first_partition(
    db: sqlite3.Connection, sites: Iterable[str], start: float, end: float
) -> tuple[str, float] | None:
    """The first partition of one of `sites` that overlaps [start, end]: (site, start_at)."""
    return _first_cut(db, "partitions", "start_at", "end_at", sites, start, end)


def _first_cut(
    db: sqlite3.Connection,
    table: str,
    begins: str,
    ends: str,
    sites: Iterable[str],
    start: float,
    end: float,
) -> tuple[str, float] | None:
    names = sorted(sites)
    if not names:
        return None
    # Table and column names are the constants of the two callers above.
    found = db.execute(
        f"SELECT site, {begins} FROM {table} WHERE site IN ({', '.join('?' * len(names))}) "  # noqa: S608
        f"AND {begins} <= ? AND ({ends} IS NULL OR {ends} > ?) ORDER BY {begins} LIMIT 1",
        (*names, end, start),
    ).fetchone()
    return None if found is None else (found[0], found[1])


def set_failures(
    db: sqlite3.Connection, vm: str, operation: str, times: int, *, after_shutdown: bool = False
) -> None:
    db.execute(
        "INSERT INTO failures (vm, operation, remaining, after_shutdown) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (vm, operation) DO UPDATE SET remaining = excluded.remaining, "
        "after_shutdown = excluded.after_shutdown",
        (vm, operation, times, int(after_shutdown)),
    )


class Failure(NamedTuple):
    """An injected failure taken for one job."""

    after_shutdown: bool  # a planned failover fails once it has shut the source down


def take_failure(db: sqlite3.Connection, vm: str, operation: str) -> Failure | None:
    """Consume one injected failure of `operation` on `vm`; None if none is left."""
    found = db.execute(
        "SELECT after_shutdown FROM failures WHERE vm = ? AND operation = ?", (vm, operation)
    ).fetchone()
    if found is None:
        return None
    _take_one(db, "failures", vm, operation)
    return Failure(bool(found[0]))


def set_suspensions(db: sqlite3.Connection, vm: str, operation: str, times: int) -> None:
    db.execute(
        "INSERT INTO suspensions (vm, operation, remaining) VALUES (?, ?, ?) "
        "ON CONFLICT (vm, operation) DO UPDATE SET remaining = excluded.remaining",
        (vm, operation, times),
    )


def take_suspension(db: sqlite3.Connection, vm: str, operation: str) -> bool:
    """Consume one injected suspension of `operation` on `vm`; False if none is left."""
    found = db.execute(
        "SELECT 1 FROM suspensions WHERE vm = ? AND operation = ?", (vm, operation)
    ).fetchone()
    if found is None:
        return False
    _take_one(db, "suspensions", vm, operation)
    return True


def _take_one(db: sqlite3.Connection, table: str, vm: str, operation: str) -> None:
    # `table` is one of two constants of this module, never input.
    db.execute(
        f"DELETE FROM {table} WHERE vm = ? AND operation = ? AND remaining <= 1",  # noqa: S608
        (vm, operation),
    )
    db.execute(
        f"UPDATE {table} SET remaining = remaining - 1 WHERE vm = ? AND operation = ?",  # noqa: S608
        (vm, operation),
    )


def suspend_job(db: sqlite3.Connection, number: int, at: float) -> None:
    """The job waits for a person from `at` on: it is no longer due."""
    db.execute(
        "UPDATE jobs SET state = 'Suspended', suspended_at = ?, suspends = 0 WHERE id = ?",
        (at, number),
    )


def resume_job(db: sqlite3.Connection, job: JobRow, at: float) -> None:
    """The job runs again from `at`, its remaining work due after it."""
    assert job.suspended_at is not None  # noqa: S101 (only a suspended job resumes)
    # Never negative: another process's clock may lag the one that suspended it.
    paused = job.paused + max(0.0, at - job.suspended_at)
    db.execute(
        "UPDATE jobs SET state = 'Running', suspended_at = NULL, paused = ?, due_at = ? "
        "WHERE id = ?",
        (paused, job.started_at + paused + job.work, job.id),
    )


class CallFault(NamedTuple):
    """An error the next call of a Provider method raises (the `call_faults` table)."""

    call: str
    error: str
    retry_after: float | None


def add_call_fault(
    db: sqlite3.Connection,
    call: str,
    error: str,
    times: int,
    vm: str | None,
    retry_after: float | None,
) -> None:
    db.execute(
        "INSERT INTO call_faults (call, vm, error, remaining, retry_after) VALUES (?, ?, ?, ?, ?)",
        (call, vm, error, times, retry_after),
    )


def any_call_fault(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM call_faults LIMIT 1").fetchone() is not None


def take_call_fault(db: sqlite3.Connection, call: str, vm: str | None) -> CallFault | None:
    """Consume the oldest fault that applies to this call of `call` (on `vm`), if any."""
    found = db.execute(
        "SELECT id, error, remaining, retry_after FROM call_faults "
        "WHERE call IN (?, '*') AND (vm IS NULL OR vm = ?) ORDER BY id LIMIT 1",
        (call, vm),
    ).fetchone()
    if found is None:
        return None
    number, error, remaining, retry_after = found
    if remaining <= 1:
        db.execute("DELETE FROM call_faults WHERE id = ?", (number,))
    else:
        db.execute("UPDATE call_faults SET remaining = remaining - 1 WHERE id = ?", (number,))
    return CallFault(call, error, retry_after)


def _connect(path: Path, *, create: bool) -> sqlite3.Connection:
    mode = "rwc" if create else "rw"
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode={mode}",
            uri=True,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
        )
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        raise errors.TerminalError(f"cannot open the fabric database {path}: {exc}") from exc
    return conn
