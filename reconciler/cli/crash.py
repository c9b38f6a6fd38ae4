"""An error drctl did not expect: exit 3 with one line, and the traceback kept in a file.

`cli.main.run` calls `report` from its one broad `except Exception`, so that no
command ever ends in Python's traceback and exit status 1 (which means "not
converged" in the contract). The line says what the error was and where its
traceback is: `<state dir>/crashes/` when the command has a state dir that
exists, else the system's temporary directory; `drctl --debug` also prints
it on stderr. An output that cannot be written (stdout on a full disk, a
closed pipe) is said as such, not as an internal error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import TypeGuard

from reconciler import errors

CRASHES = "crashes"


def report(exc: BaseException, args: argparse.Namespace) -> int:
    """Say that `exc` happened, keep its traceback, and return the exit code (3)."""
    if _output_failed(exc):
        _discard_stdout()
        _say(f"drctl: cannot write the output: {exc.strerror or exc}")
        return errors.EXIT_RUNTIME
    details = "".join(traceback.format_exception(exc))
    if getattr(args, "debug", False):
        with contextlib.suppress(OSError):
            sys.stderr.write(details)
    saved = _save(details, getattr(args, "state_dir", None))
    what = errors.one_line(f"{type(exc).__name__}: {exc}", 200)
    where = (
        f"its traceback is in {errors.shown_path(str(saved))}"
        if saved is not None
        else "run it again as drctl --debug ... to see its traceback"
    )
    _say(f"drctl: internal error: {what}; {where}")
    return errors.EXIT_RUNTIME


def crash_dir(state_dir: Path) -> Path:
    return state_dir / CRASHES


def _save(details: str, state_dir: object) -> Path | None:
    """Write `details` to a new file, in the state dir if there is one; None if nowhere."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    name = f"drctl-crash-{stamp}-{os.getpid()}.txt"
    places = [Path(tempfile.gettempdir())]
    if isinstance(state_dir, Path) and state_dir.is_dir():  # never created for this
        places.insert(0, crash_dir(state_dir))
    for place in places:
        try:
            place.mkdir(exist_ok=True)
            path = place / name
            path.write_text(details)
        except OSError:
            continue
        return path
    return None


# What writing to stdout fails with: a full disk or quota, an I/O error, a
# closed descriptor. An error of a file drctl opened names that file.
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EPIPE, errno.EBADF})


def _output_failed(exc: BaseException) -> TypeGuard[OSError]:
    return isinstance(exc, OSError) and exc.filename is None and exc.errno in _OUTPUT_ERRNOS


def _discard_stdout() -> None:
    """Drop what stdout still holds, so that the interpreter's last flush does not fail."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _say(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
