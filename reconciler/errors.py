"""The whole exception hierarchy of drctl.

Callers catch `DrctlError`. Each error knows the process exit code it maps to
(the CLI contract: 2 invalid input or usage, 3 runtime error), so the CLI has
one place that turns an exception into an exit status.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_NOT_CONVERGED = 1
EXIT_INVALID = 2
EXIT_RUNTIME = 3


class DrctlError(Exception):
    """Base of every error drctl raises on purpose."""

    exit_code = EXIT_RUNTIME


@dataclass(frozen=True, order=True)
class SpecProblem:
    """One thing wrong with the desired state, located in a file."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


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


class GitError(DrctlError):
    """A git command failed; the message carries git's own words (its stderr)."""

    exit_code = EXIT_RUNTIME


class WatchError(DrctlError):
    """Watching the spec directory for changes failed; changes wait for the next resync."""

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
