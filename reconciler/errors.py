"""The whole exception hierarchy of drctl.

Callers catch `DrctlError`. Each error knows the process exit code it maps to
(the CLI contract: 2 invalid input or usage, 3 runtime error), so the CLI has
one place that turns an exception into an exit status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXIT_OK = 0
EXIT_NOT_CONVERGED = 1
EXIT_INVALID = 2
EXIT_RUNTIME = 3


class DrctlError(Exception):
    """Base of every error drctl raises on purpose."""

    exit_code = EXIT_RUNTIME


# A message is one line of at most this many characters, and a quoted word of
# input in it (a key, a name, a value: no space in it, unlike the prose between
# two quoted words) is cut to MAX_QUOTED. What a user typed may be 200 KB long.
MAX_MESSAGE = 400
MAX_QUOTED = 60
_QUOTED = re.compile(rf"'([^'\s]{{{MAX_QUOTED + 1},}})'")


@dataclass(frozen=True, order=True)
class SpecProblem:
    """One thing wrong with the desired state, located in a file.

    `line` is 1-based; 0 when the problem is the path as a whole (a spec
    directory that does not exist), which is then printed without a line.
    """

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = shown_path(self.file)
        if self.line == 0:
            return f"{where}: {one_line(self.message)}"
        return f"{where}:{self.line}: {one_line(self.message)}"


def shown_path(name: str) -> str:
    """A file name as drctl prints it: as it is when plain, else quoted with escapes.

    A name with a colon, a quote, a backslash, a character that does not print
    (a newline, a control character), a byte that is not UTF-8 (a surrogate
    escape, as Python reads such a name) or a space at either end is printed
    in double quotes with \\n, \\t, \\", \\\\, \\xNN for such a byte and
    \\uNNNN for such a character, so that `file:line` reads one way only.
    """
    if name and name.isprintable() and name.strip() == name and not _SPECIAL & set(name):
        return name
    return '"' + "".join(_escaped(c, quote=True) for c in name) + '"'


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` as one printable line: escapes for what does not print, long quotes cut short."""
    if not text.isprintable():
        text = "".join(_escaped(c, quote=False) for c in text)
    text = _QUOTED.sub(lambda m: f"'{_cut(m.group(1), MAX_QUOTED)}'", text)
    return _cut(text, limit)


def _cut(text: str, limit: int) -> str:
    """`text`, or its start and its end around an ellipsis when longer than `limit`."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    return f"{text[: limit - tail - 1]}…{text[-tail:]}"


_SPECIAL = frozenset(':"\\')
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(char: str, quote: bool) -> str:
    if quote and char in '"\\':
        return "\\" + char
    if char.isprintable():
        return char
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, read as a surrogate escape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


class SpecError(DrctlError):
    """The desired state is invalid: nothing may be executed for it."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(DrctlError):
    """A command was called with arguments that cannot work."""

    exit_code = EXIT_INVALID


class InventoryError(UsageError):
    """A simulated-fabric inventory file is invalid."""


class LockHeldError(DrctlError):
    """Another drctl process is acting on this fabric."""

    exit_code = EXIT_RUNTIME


class LockLostError(DrctlError):
    """The state dir this drctl locked is no longer the one at its path: nothing more starts."""

    exit_code = EXIT_RUNTIME


class LeadershipLostError(LockLostError):
    """This replica no longer holds the etcd lease (or cannot prove it in time): it starts
    nothing more and steps down to follower (`drctl run --lock etcd://...`)."""


class EtcdUnavailableError(DrctlError):
    """No etcd member of `--lock` answered."""

    exit_code = EXIT_RUNTIME


class ProviderError(DrctlError):
    """The fabric refused or failed a call."""

    exit_code = EXIT_RUNTIME


class RejectedError(ProviderError):
    """The fabric does not allow this operation in the VM's current state."""


class TransientError(ProviderError):
    """The call failed for a reason that may pass; retry with backoff."""


class ThrottledError(TransientError):
    """The fabric asked us to slow down; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalError(ProviderError):
    """The call cannot succeed by retrying (unknown VM, broken fabric)."""


class NoSimulatedFabricError(TerminalError):
    """The state dir holds no simulated fabric: the wrong path, or `fabric init` not run yet.

    `state_dir` is the path tried; the command line says how it was chosen and
    whether a running daemon uses another one (`cli.state_hint`).
    """

    def __init__(self, message: str, state_dir: str) -> None:
        super().__init__(message)
        self.state_dir = state_dir


class GitError(DrctlError):
    """A git command failed; the message carries git's own words (its stderr)."""

    exit_code = EXIT_RUNTIME


class WatchError(DrctlError):
    """Watching the spec directory for changes failed; changes wait for the next resync."""

    exit_code = EXIT_RUNTIME


class NoDaemonError(DrctlError):
    """A command that asks a running `drctl run` found none it can ask (`drctl reconcile`)."""

    exit_code = EXIT_RUNTIME


class StateDirError(DrctlError):
    """The state dir cannot be used as it is now: drctl acts on nothing it cannot journal."""

    exit_code = EXIT_RUNTIME


class StateFileError(StateDirError):
    """A file of the state dir is damaged, cut short or not drctl's."""


class StateWriteError(StateDirError):
    """A file of the state dir cannot be written now: read-only, full, or no permission.

    `path` is the file (or directory) that refused the write.
    """

    def __init__(self, path: object, message: str) -> None:
        super().__init__(message)
        self.path = path


class JournalBusyError(StateWriteError):
    """Another process holds the journal's SQLite lock: drctl waits for it."""
