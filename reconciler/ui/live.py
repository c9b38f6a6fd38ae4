"""Live terminal views: `drctl apply`'s line per running operation, `drctl status --watch`.

Drawn with rich's `Live` (a region of the terminal redrawn in place) rather
than escape codes of our own: rich knows the terminal's width and what it
can do, redraws a region taller than one line, and keeps lines printed
above the region while it draws. Only on a terminal: to a pipe or a file,
`Progress` prints exactly the plain lines it always printed (scripts and
tests read them) and `watch` prints the whole table again each time it
changed. Called by `drctl apply` (cli/applying.py) and `drctl status`
(cli/planning.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from reconciler.core import plan
from reconciler.engine import execute
from reconciler.fabric import base
from reconciler.ui import report

# How often the live line of `drctl apply` redraws itself (its elapsed time ticks).
REFRESH_PER_SECOND = 4


def _console(out: TextIO) -> Console:
    # Our text is plain: no [markup], no :emoji:, no colours guessed from its words.
    return Console(file=out, markup=False, emoji=False, highlight=False)


class _Running:
    """The live region of `drctl apply`: a line per job running, drawn when rich redraws."""

    def __init__(self) -> None:
        self.jobs: tuple[tuple[str, str, float, datetime], ...] = ()  # name, operation, %, start

    def __rich__(self) -> Text:
        now = datetime.now().astimezone()
        lines = [
            f"  ... {name} {operation} {progress:.0%} {_elapsed(now, started)}"
            for name, operation, progress, started in self.jobs
        ]
        return Text("\n".join(lines))


def _elapsed(now: datetime, started: datetime) -> str:
    seconds = max(0, int((now - started).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class Progress:
    """Apply's progress: plain lines, plus a live line per running job on a terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.live = self.out.isatty()
        self._phases: dict[tuple[str, str], plan.Phase] = {}
        self._running = _Running()
        self._view: Live | None = None

    def event(self, event: execute.Event) -> None:
        stamp = event.at.strftime("%H:%M:%S")
        what = f"{event.plan}/{event.vm} {report.event_operation(event)}"
        self._say(f"{stamp} {what} {report.event_outcome(event)}")

    def retired(self, fabric: str, retired: base.Retired) -> None:
        """What became of the object a fabric kept for a plan that left the spec."""
        stamp = datetime.now().astimezone().strftime("%H:%M:%S")
        verb = "deleted" if retired.deleted else "left in place"
        self._say(
            f"{stamp} plan {retired.plan} left the spec: {retired.name} of fabric {fabric} "
            f"{verb} ({retired.reason})"
        )

    def step(self, built: plan.Plan) -> None:
        for vp in built.vms:
            key = (vp.plan, vp.name)
            if self._phases.get(key) is not vp.phase:
                # A VM's first phase is news only when it needs a human.
                if key in self._phases or vp.phase is plan.Phase.BLOCKED:
                    self._say(f"         {vp.plan}/{vp.name}: {vp.phase}: {vp.reason}")
                self._phases[key] = vp.phase
        if not self.live:
            return
        self._running.jobs = tuple(
            (f"{vp.plan}/{vp.name}", str(job.operation), job.progress, job.started_at)
            for vp in built.vms
            if vp.observed is not None and (job := vp.observed.job) is not None and job.running
        )
        if self._view is None and self._running.jobs:
            self._view = Live(
                self._running,
                console=_console(self.out),
                refresh_per_second=REFRESH_PER_SECOND,
                transient=True,  # gone at the end: the plain lines above it stay
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._view.start()
        elif self._view is not None:
            self._view.refresh()

    def close(self) -> None:
        """Take the live region away: before a question at the terminal, the summary, or
        any way out (the next step with jobs running draws it again)."""
        if self._view is not None:
            self._view.stop()
            self._view = None

    def _say(self, line: str) -> None:
        if self._view is not None:
            # Printed above the live region, which rich draws again below it.
            self._view.console.print(Text(line), soft_wrap=True)
        else:
            print(line, file=self.out, flush=True)


def watch(
    look: Callable[[], str],
    interval: float,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    first: str | None = None,
    stamped: bool = True,
) -> None:
    """Show `first` (or `look()`'s text), then look again every `interval` seconds until
    Ctrl-C.

    On a terminal the text is redrawn in place, under a line saying when it
    was last looked at; elsewhere it is printed whole each time it changed,
    after such a line (`stamped` False: without it, for a JSON document a
    line). KeyboardInterrupt leaves it (the caller exits 0).
    """
    out = out or sys.stdout
    shown = look() if first is None else first
    if not out.isatty():
        while True:
            if stamped:
                print(f"--- {_now()}", file=out)
            out.write(shown if shown.endswith("\n") else shown + "\n")
            out.flush()
            while (text := _next(look, interval, sleep)) == shown:
                pass
            shown = text
    with Live(
        _framed(shown, interval),
        console=_console(out),
        auto_refresh=False,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as view:
        while True:
            shown = _next(look, interval, sleep)
            view.update(_framed(shown, interval), refresh=True)


def _next(look: Callable[[], str], interval: float, sleep: Callable[[float], None]) -> str:
    sleep(interval)
    return look()


def _framed(text: str, interval: float) -> Text:
    return Text(f"every {interval:g}s, at {_now()} (Ctrl-C to stop)\n{text.rstrip()}")


def _now() -> str:
    return datetime.now().astimezone().strftime("%H:%M:%S")
