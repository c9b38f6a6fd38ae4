"""The emulated Hyper-V hosts behind a stand-in `pwsh`, for the end-to-end tests.

drctl's local runner (`transport: {local: {executable: pwsh}}`) starts one
`pwsh -NoProfile -NonInteractive -Command -` per script, the script wrapped in
`Invoke-Command -ComputerName <host>`. The stand-in (standin_pwsh.py, written
as `pwsh` into a directory first on PATH, `env()`) hands its arguments and stdin to `PwshServer`, a TCP server on
127.0.0.1 in the test's process holding one `Emulator`, so the hosts' state
lives across drctl processes and the test reads and changes it directly
(`controls`, under the same lock). The server unwraps the script with its own
copy of the wrapper (any other text, or other arguments, is refused), runs
it on the emulator exactly as the provider's tests do, and answers the JSON
line the wrapper prints: the output objects and the error records, a host
that does not answer as Invoke-Command's `CannotConnect` record. What the
emulator refuses to know is kept in `refused` (a test fails on it).

Every cmdlet drctl sent this way is in `calls`, in order (the fabric's own
record of what drctl did); `hold` makes one cmdlet's answer wait, after the
host ran it, until the test releases it: a test kills drctl right there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socketserver
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fabric.hyperv.controls import HostControls
from fabric.hyperv.emulator import Emulator, State

from reconciler import errors
from reconciler.fabric.hyperv.runner import Result

STANDIN = Path(__file__).with_name("standin_pwsh.py")
ARGV = ["-NoProfile", "-NonInteractive", "-Command", "-"]
# The local runner's wrapper (reconciler/fabric/hyperv/local.py), written here again so that
# a change there fails these tests instead of passing unread.
_WRAPPER = re.compile(
    re.escape(
        "$ErrorActionPreference = 'Stop'\n$drctlOut = @(); $drctlErr = @()\ntry {\n"
        "  $drctlOut = @(Invoke-Command -ComputerName "
    )
    + r"'(?P<host>[^']+)'"
    + re.escape(" -ErrorVariable +drctlErr -ScriptBlock {\n")
    + r"(?P<script>.*)"
    + re.escape(
        "\n  })\n} catch { $drctlErr += $_ }\n[pscustomobject]@{\n"
        '  output = @($drctlOut | ForEach-Object { "$_" })\n'
        "  errors = @($drctlErr | ForEach-Object { [pscustomobject]@{\n"
        '    id = "$($_.FullyQualifiedErrorId)"; category = "$($_.CategoryInfo.Category)"\n'
        '    message = "$($_.Exception.Message)" } })\n'
        "} | ConvertTo-Json -Compress -Depth 3"
    ),
    re.DOTALL,
)


@dataclass(frozen=True)
class Call:
    """One cmdlet drctl sent: where, which (emulator.COMMANDS), on what, and its text."""

    host: str
    command: str
    vm: str
    script: str
    refused: str | None  # the error id the host answered, if it refused


@dataclass
class Hold:
    """One cmdlet whose answer waits, after the host ran it, until `release`."""

    host: str
    command: str
    vm: str
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    fired: bool = False  # once: the same cmdlet sent again is answered at once

    def release(self) -> None:
        self.released.set()


class PwshServer:
    def __init__(self, state: State) -> None:
        self.emulator = Emulator(state, time.time)
        self.lock = threading.RLock()
        self.controls = HostControls(self.emulator)
        self.calls: list[Call] = []
        self.refused: list[str] = []
        self._holds: list[Hold] = []
        self.bin = Path(tempfile.mkdtemp(prefix="drctl-pwsh-"))
        standin = self.bin / "pwsh"
        # This interpreter, without site (-S): a pyenv shim would cost 0.2 s a script.
        standin.write_text(f"#!{sys.executable} -S\n" + STANDIN.read_text())
        standin.chmod(0o755)
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def env(self) -> dict[str, str]:
        """drctl's environment: the stand-in pwsh first on PATH, pointed at this server."""
        return {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "DRCTL_TEST_PWSH_PORT": str(self.port),
        }

    def hold(self, host: str, command: str, vm: str) -> Hold:
        held = Hold(host, command, vm)
        with self.lock:
            self._holds.append(held)
        return held

    def by_hand(self, host: str, line: str) -> Result:
        """An operator's cmdlet at `host`'s console: not one of drctl's `calls`."""
        with self.lock:
            return self.emulator.run(host, "$ErrorActionPreference = 'Stop'\n" + line, 60)

    def close(self) -> None:
        for held in self._holds:
            held.release()
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self.bin, ignore_errors=True)

    # --- one script ------------------------------------------------------------------

    def answer(self, argv: list[str], text: str) -> tuple[dict[str, object], Hold | None]:
        found = _WRAPPER.fullmatch(text)
        if argv != ARGV or found is None:
            self.refused.append(f"pwsh {argv}: {text[:300]!r}")
            return {"code": 1, "stdout": "", "stderr": "not a script of drctl's local runner"}, None
        host = found.group("host").replace("''", "'")
        with self.lock:
            before = len(self.emulator.state.calls)
            try:
                result = self.emulator.run(host, found.group("script"), 60)
            except errors.TransientError as exc:
                record = {
                    "id": "CannotConnect,PSSessionStateBroken",
                    "category": "OpenError",
                    "message": f"Connecting to remote server {host} failed: WinRM cannot "
                    f"complete the operation ({exc})",
                }
                return {"code": 0, "stdout": json.dumps({"output": [], "errors": [record]})}, None
            except AssertionError as exc:
                self.refused.append(str(exc))
                return {"code": 1, "stdout": "", "stderr": str(exc)}, None
            refused = result.errors[0].id if result.errors else None
            held = None
            for line in self.emulator.state.calls[before:]:
                at, command, vm = line.split("|", 2)
                self.calls.append(Call(at, command, vm, found.group("script"), refused))
                for hold in self._holds:
                    if not hold.fired and (hold.host, hold.command, hold.vm) == (at, command, vm):
                        hold.fired, held = True, hold
        answer = {
            "output": list(result.output),
            "errors": [
                {"id": e.fq_id, "category": e.category, "message": e.message} for e in result.errors
            ],
        }
        return {"code": 0, "stdout": json.dumps(answer) + "\n", "stderr": ""}, held

    def _handler(self) -> type[socketserver.StreamRequestHandler]:
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request = json.loads(self.rfile.read())
                reply, held = server.answer(request["argv"], request["stdin"])
                if held is not None:
                    held.held.set()
                    held.released.wait()
                    return  # dropped unanswered: the drctl that sent it is gone
                reply.setdefault("stderr", "")
                self.wfile.write(json.dumps(reply).encode())

        return Handler
