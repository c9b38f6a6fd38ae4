"""What the status page and /status.json cost to make at 1k, 10k and 100k VMs.

Run by hand: `.venv/bin/python bench/status_page_scale.py [VMS ...]`. The
inputs are those of bench/metrics_scale.py (the real planner on a synthetic
fleet: most VMs converged, every 50th failing over). Each is made on a worker
thread when a request comes, never in a pass (ui/status_feed.py): what it
costs is what a look at the page takes from the daemon's core, and after it
the page is reused for three times that.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from measure import median_seconds
from metrics_scale import _inputs

from reconciler.engine import status
from reconciler.ui import status_feed, status_page

DAEMON = status.DaemonStatus(
    pid=1,
    running=True,
    revision_in_force="abc123",
    revision_seen="abc123",
    spec_valid=True,
    spec_errors=(),
    updated_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
)


def measure(count: int) -> None:
    built, _observed = _inputs(count)
    snap = status_page.Snapshot(DAEMON, built, "abc123")
    runs = 3 if count >= 100_000 else 5
    page = median_seconds(runs, lambda: status_feed.render_html(snap))
    document = median_seconds(runs, lambda: status_feed.render_document(snap))
    page_size = len(status_feed.render_html(snap).body)
    doc_size = len(status_feed.render_document(snap).body)
    print(
        f"{count:>7} VMs  page {page:.3f} s ({page_size / 1e6:.2f} MB, at most "
        f"{status_page.MAX_VM_ROWS} VM rows) | /status.json {document:.3f} s "
        f"({doc_size / 1e6:.1f} MB)"
    )


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1_000, 10_000, 100_000]
    print(f"median of 5 runs (3 at 100k); Python {sys.version.split()[0]}")
    for count in counts:
        measure(count)


if __name__ == "__main__":
    main()
