"""Only one drctl acts on a fabric at a time, whatever is done to the state dir's files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import desired, inventory, inventory_vm, sim_fabric, want

from reconciler.engine import execute, journal
from reconciler.engine.lease import flock
from reconciler.errors import LockHeldError, LockLostError, StateFileError
from reconciler.kits.clock import VirtualClock

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


def holding(state_dir: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_deleted_lock_file_keeps_a_second_drctl_out_and_the_holder_is_named_by_pid(
    tmp_path: Path,
) -> None:
    holder = holding(tmp_path)
    try:
        (tmp_path / "drctl.lock").unlink()
        with pytest.raises(LockHeldError) as caught, flock.hold(tmp_path, "apply"):
            pass
        said = str(caught.value)
        assert (
            f"a drctl (pid {holder.pid}; its lock file {tmp_path / 'drctl.lock'} was removed)"
            in said
        )
        assert not (tmp_path / "drctl.lock").exists()  # the refused one made nothing
    finally:
        holder.communicate("")


def test_the_holder_writes_its_lock_file_again_at_its_next_check(tmp_path: Path) -> None:
    with flock.hold(tmp_path, "run") as lease:
        (tmp_path / "drctl.lock").unlink()
        lease.check()
        assert (tmp_path / "drctl.lock").read_text() == lease.holder
    assert (tmp_path / "drctl.lock").read_text() == ""


def test_a_state_dir_replaced_under_the_holder_is_noticed_and_the_new_one_is_free(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    with flock.hold(state, "run") as lease:
        lease.check()
        state.rename(tmp_path / "state.old")
        state.mkdir()
        with pytest.raises(LockLostError) as caught:
            lease.check()
        assert f"{state} is no longer the directory this drctl locked" in str(caught.value)
        with flock.hold(state, "apply"):
            pass  # another directory: its lock is free
        shutil.rmtree(state)
        with pytest.raises(LockLostError):
            lease.check()


@pytest.mark.parametrize("kind", ["directory", "symlink", "fifo"])
def test_a_lock_path_that_is_not_a_file_is_refused_saying_what_to_do(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "drctl.lock"
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink":
        path.symlink_to(tmp_path / "elsewhere")
    else:
        os.mkfifo(path)
    what = {"directory": "a directory", "symlink": "a symbolic link", "fifo": "not a regular file"}
    with pytest.raises(StateFileError) as caught, flock.hold(tmp_path, "apply"):
        pass
    assert str(caught.value) == (
        f"{path} is {what[kind]}, not drctl's lock file: remove it (drctl makes it again) and retry"
    )
    assert not (tmp_path / "elsewhere").exists()
    path.unlink() if kind != "directory" else path.rmdir()
    with flock.hold(tmp_path, "apply"):
        pass  # the directory lock was released with the refusal


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(StateFileError) as caught, flock.hold(tmp_path / "state", "apply"):
        pass
    assert f"the state dir {tmp_path / 'state'} is not a directory" in str(caught.value)


def test_an_executor_whose_state_dir_was_replaced_starts_nothing(tmp_path: Path) -> None:
    """The check before each operation: no intent journaled, no call reaches the fabric."""
    clock = VirtualClock()
    fabric_dir = tmp_path / "fabric"
    fabric = sim_fabric(fabric_dir, inventory(inventory_vm("sql01")), clock)
    want_rtm = desired(want("sql01", "rtm"))
    state = tmp_path / "state"
    history = journal.Journal(fabric_dir)
    checks = []

    def check_then_replace(lease: flock.Lease) -> None:
        lease.check()
        checks.append(1)
        if len(checks) == 1:  # replaced while the step observes and plans
            state.rename(tmp_path / "state.old")
            state.mkdir()

    try:
        with flock.hold(state, "apply") as lease:
            executor = execute.Executor(
                fabric, history, clock, check_lock=lambda: check_then_replace(lease)
            )
            with pytest.raises(LockLostError):
                executor.step(want_rtm, "rev-1")
            executor.step(want_rtm, "rev-1", start=False)  # following jobs needs no lock
        assert history.entries() == []
        assert fabric.list_jobs() == []
    finally:
        fabric.close()
