"""`/healthz` and `/readyz` of `drctl run`: is the daemon alive, and is it doing its job.

The CLI adds both to the metrics endpoint (`engine.endpoint.add_page`); each
answers from what `daemon.loop.Daemon` keeps in memory (`Vitals`), on the
endpoint's thread, without I/O.

- **/healthz** (liveness, for systemd's watchdog or Kubernetes' livenessProbe):
  503 only when the reconcile loop stopped turning, a pass not ended for
  longer than `stalled_after` (a wedged call). Waiting for the fabric lock,
  an invalid revision or a fabric that does not answer are not reasons to
  restart drctl: a restart would not fix them, and would lose nothing but
  time, so they are 200 here and 503 in /readyz.
- **/readyz** (readiness): 200 once a revision is in force, the state dir
  takes writes and some fabric answers, as leader, standby replica or the
  only daemon (a standby serves its own observation, so it stays in the
  Service that Prometheus scrapes); otherwise 503 with what it waits for and
  what to do, the same words as `drctl status`.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = 200
UNAVAILABLE = 503


@dataclass
class Vitals:
    """What the daemon last said of itself; written by the loop, read by the probes."""

    started: bool = False  # the loop runs (the fabric lock is held, or campaigning)
    last_pass: float | None = None  # monotonic time the last pass ended
    revision_in_force: str | None = None
    refused: str | None = None  # why no revision is in force yet (the spec error, git's)
    state_problem: str | None = None  # the state dir takes no writes: why
    blind: str | None = None  # no fabric in use answered the last pass: why
    role: str = "the only daemon on its state dir"  # or "leader", "standby replica"


def healthz(vitals: Vitals, now: float, stalled_after: float) -> tuple[int, str]:
    """Liveness: 503 only while the loop is stalled."""
    if not vitals.started:
        return OK, "ok: waiting for the fabric lock (another drctl holds it)"
    if vitals.last_pass is None:
        return OK, "ok: the first pass runs"
    idle = now - vitals.last_pass
    if idle > stalled_after:
        return UNAVAILABLE, (
            f"stalled: no reconcile pass ended for {idle:.0f} s (more than "
            f"{stalled_after:.0f} s); a call may hang: see the log, then restart drctl "
            "(running jobs are followed again, never started twice)"
        )
    return OK, f"ok: last pass ended {idle:.1f} s ago"


def readyz(vitals: Vitals) -> tuple[int, str]:
    """Readiness: a revision in force, the state dir usable, some fabric answering."""
    if not vitals.started and vitals.state_problem is not None:
        return UNAVAILABLE, f"not ready: cannot use the state dir: {vitals.state_problem}"
    if not vitals.started:
        return UNAVAILABLE, (
            "not ready: waiting for the fabric lock, which another drctl on this state dir "
            "holds (drctl apply, or a second daemon): stop it, or give this one --lock"
        )
    if vitals.revision_in_force is None:
        why = vitals.refused or "no revision read yet"
        return UNAVAILABLE, f"not ready: no valid revision in force: {why}"
    if vitals.state_problem is not None:
        return UNAVAILABLE, f"not ready: starts nothing: {vitals.state_problem}"
    if vitals.blind is not None:
        return UNAVAILABLE, f"not ready: no fabric answers: {vitals.blind}"
    return OK, f"ready: revision {vitals.revision_in_force} in force, as {vitals.role}"
