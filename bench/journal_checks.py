"""What the journal's checks cost: opening a journal, and writing an intent, against the bare open.

Run: `.venv/bin/python bench/journal_checks.py` (journals of 10,000 and 100,000
actions), or `--actions 1000` for a quick look.

Measured (medians of --runs), on a journal of N actions written straight into
the file in one transaction, then closed (checkpointed):
- `journal.Journal(state_dir)`: the open drctl does (its file checked, SQLite's
  `quick_check`, the application id, which journal it is against the state
  dir's `journal.id`), then closed;
- the baseline, in the same run: what the open did before these checks
  (`sqlite3.connect`, `PRAGMA journal_mode=WAL`, the schema script), closed;
- one `record_intent` by a writer (which also rewrites `journal.id`, a small
  file renamed into place, not synced) against a reader's (`writer=False`,
  the record left alone), each the median of --intents intents.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from measure import median_seconds

from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import journal
from reconciler.engine import state_dir as layout

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def make_journal(state: Path, actions: int) -> None:
    journal.Journal(state).close()
    with sqlite3.connect(layout.journal_path(state)) as db:
        db.executemany(
            "INSERT INTO actions (plan, vm, operation, revision, intended_at, result, job_id) "
            "VALUES ('finance', ?, 'PlannedFailover', ?, ?, 'succeeded', ?)",
            (
                (f"vm{n % 1000:04d}", f"rev{n // 1000}", AT.isoformat(), f"job-{n:06d}")
                for n in range(actions)
            ),
        )
    sqlite3.connect(layout.journal_path(state)).execute("PRAGMA wal_checkpoint(TRUNCATE)")


def bare_open(state: Path) -> None:
    db = sqlite3.connect(layout.journal_path(state), timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(journal._SCHEMA)  # the baseline is the open before the checks
    db.close()


def checked_open(state: Path) -> None:
    journal.Journal(state).close()


def intent_seconds(state: Path, intents: int, *, writer: bool) -> float:
    j = journal.Journal(state, writer=writer)
    times = []
    for n in range(intents):
        action = plan.Action("finance", f"vm{n:04d}", Operation.STOP_VM, "ams")
        began = time.perf_counter()
        j.record_intent(action, "rev-bench", AT)
        times.append(time.perf_counter() - began)
    j.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--intents", type=int, default=300)
    args = parser.parse_args()
    print("| journal | checked open | bare open (before) | intent, writer | intent, reader |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for actions in args.actions:
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            make_journal(state, actions)
            checked = median_seconds(args.runs, lambda s=state: checked_open(s))
            bare = median_seconds(args.runs, lambda s=state: bare_open(s))
            writer = intent_seconds(state, args.intents, writer=True)
            reader = intent_seconds(state, args.intents, writer=False)
        print(
            f"| {actions:,} actions | {checked * 1000:.1f} ms | {bare * 1000:.1f} ms "
            f"| {writer * 1000:.2f} ms | {reader * 1000:.2f} ms |"
        )


if __name__ == "__main__":
    main()
