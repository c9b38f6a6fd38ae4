"""Building values for every VM at once (100k of them) without the cyclic GC in the way.

The cyclic garbage collector runs again and again as the heap grows while a
spec, an observation, a plan or a metrics snapshot of 100k VMs is built, and
triples the time it takes (shared/perf-notes.md); none of those values form
reference cycles, and reference counting frees them. Used by spec, plan,
metrics, audit, the simulator and the CLI around their bulk work.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC for the block.

    Whoever found it enabled enables it again, so overlapping pauses (the
    scrape thread and the daemon thread) end with it enabled.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
