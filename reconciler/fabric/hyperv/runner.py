"""The runner interface: run one PowerShell script on one host, get its output and error stream.

Two runners implement it: `remoting.PsrpRunner` (WinRM through pypsrp, the
default) and `local.LocalRunner` (`pwsh` on this machine); the tests' Hyper-V
emulator is a third. The provider (`hyperv.provider`) calls nothing else.

A runner returns what the host answered, errors included: every record of
the error stream comes back (`Result.errors`), since pypsrp's `had_errors`
is true only for a terminating error and Hyper-V writes its refusals as
non-terminating ones. A host that cannot be reached, a timeout, or a WinRM
quota raise `TransientError` (`ThrottledError` for the quota): the script
may or may not have run, which the provider settles by reading the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler import errors


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """One record of the error stream, as PowerShell's ErrorRecord carries it."""

    fq_id: str  # FullyQualifiedErrorId: `<Id>,Microsoft.HyperV.PowerShell.Commands.<Class>`
    category: str  # ErrorCategory name (InvalidOperation, InvalidArgument, ...)
    message: str

    @property
    def id(self) -> str:
        """The error id alone: the class suffix differs between Windows versions."""
        return self.fq_id.split(",", 1)[0]

    def __str__(self) -> str:
        return f"{self.message} ({self.fq_id})"


@dataclass(frozen=True, slots=True)
class Result:
    output: tuple[str, ...]  # the output objects, as text (the provider's scripts emit JSON)
    errors: tuple[ErrorRecord, ...] = ()
    warnings: tuple[str, ...] = ()

    def json(self) -> Any:
        """The output as the one JSON document the provider's projection emits."""
        text = "\n".join(self.output).strip()
        try:
            return json.loads(text)
        except ValueError as exc:
            raise errors.TransientError(
                f"the host answered something that is not the projection's JSON: {text[:200]!r}"
            ) from exc


class Runner(Protocol):
    def run(self, host: str, script: str, timeout: float) -> Result:
        """Run `script` on `host` within `timeout` seconds; raise TransientError when the
        host cannot be reached or the script did not end in time."""
        ...

    def close(self) -> None: ...
