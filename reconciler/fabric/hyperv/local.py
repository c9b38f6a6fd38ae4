"""The local runner: PowerShell on this machine (drctl on Windows), reaching each host with
Invoke-Command, one `pwsh` (or `powershell.exe`) process per script.

The script runs inside a wrapper (`WRAPPER`) that catches what it throws and
writes one JSON line: its output objects as text, and every error record
(FullyQualifiedErrorId, category, message) of the error stream, since a
process's exit code says nothing of non-terminating errors. The process is
killed at the call's deadline (TransientError: whether the cmdlet took
effect is read from the host next).
"""

from __future__ import annotations

import json
import shutil
import subprocess

from reconciler import errors
from reconciler.fabric.hyperv import script as scripts
from reconciler.fabric.hyperv.runner import ErrorRecord, Result

WRAPPER = """$ErrorActionPreference = 'Stop'
$drctlOut = @(); $drctlErr = @()
try {
  $drctlOut = @(Invoke-Command -ComputerName HOST -ErrorVariable +drctlErr -ScriptBlock {
SCRIPT
  })
} catch { $drctlErr += $_ }
[pscustomobject]@{
  output = @($drctlOut | ForEach-Object { "$_" })
  errors = @($drctlErr | ForEach-Object { [pscustomobject]@{
    id = "$($_.FullyQualifiedErrorId)"; category = "$($_.CategoryInfo.Category)"
    message = "$($_.Exception.Message)" } })
} | ConvertTo-Json -Compress -Depth 3"""


def wrapped(host: str, script: str) -> str:
    """`script` as the local process runs it against `host`."""
    return WRAPPER.replace("HOST", scripts.quoted(host), 1).replace("SCRIPT", script, 1)


class LocalRunner:
    def __init__(self, executable: str = "pwsh") -> None:
        self._executable = executable

    def run(self, host: str, script: str, timeout: float) -> Result:
        program = shutil.which(self._executable)
        if program is None:
            raise errors.TerminalError(
                f"{self._executable} is not on PATH: spec.hyperv.transport.local runs "
                "PowerShell on this machine"
            )
        try:
            done = subprocess.run(
                [program, "-NoProfile", "-NonInteractive", "-Command", "-"],
                input=wrapped(host, script),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise errors.TransientError(
                f"{host}: the script did not end within {timeout:g} s and was stopped; whether "
                "its cmdlet took effect is read from the host next"
            ) from exc
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError) as exc:
            raise errors.TransientError(
                f"{host}: {self._executable} ended with {done.returncode} without an answer: "
                f"{done.stderr.strip()[:300]}"
            ) from exc
        found = tuple(
            ErrorRecord(str(e.get("id", "")), str(e.get("category", "")), str(e.get("message", "")))
            for e in answer.get("errors") or []
        )
        unreachable = [e for e in found if e.id.startswith("CannotConnect") or "WinRM" in e.message]
        if unreachable:
            raise errors.TransientError(f"{host} does not answer: {unreachable[0]}")
        return Result(tuple(str(o) for o in answer.get("output") or []), found)

    def close(self) -> None:
        """Nothing is kept between calls."""
