"""Only one drctl acts on a fabric at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.engine.lease import flock
from reconciler.errors import LockHeldError

HOLDER = """
import sys, time
from pathlib import Path
from reconciler.engine.lease import flock
with flock.hold(Path(sys.argv[1]), "apply"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_second_holder_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeldError) as caught, flock.hold(tmp_path, "apply"):
            pass
        assert f"drctl apply (pid {holder.pid})" in str(caught.value)
        assert "only one drctl may act at a time" in str(caught.value)
    finally:
        holder.communicate("")
    with flock.hold(tmp_path, "apply"):
        pass  # released when the holder exits


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        holder.kill()
    with flock.hold(tmp_path, "apply"):
        pass
