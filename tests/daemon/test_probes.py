"""/healthz and /readyz answer what an orchestrator needs: restart only a stalled loop;
route traffic only to a daemon with a revision in force, a usable state dir and a fabric."""

from __future__ import annotations

import pytest

from reconciler.daemon import probes

READY = probes.Vitals(started=True, last_pass=100.0, revision_in_force="abc123")


def test_liveness_fails_only_when_the_loop_stalls() -> None:
    waiting = probes.Vitals()
    assert probes.healthz(waiting, 10_000.0, 120.0)[0] == 200  # waiting for the lock: alive
    first = probes.Vitals(started=True)
    assert probes.healthz(first, 10_000.0, 120.0) == (200, "ok: the first pass runs")
    assert probes.healthz(READY, 219.0, 120.0) == (200, "ok: last pass ended 119.0 s ago")
    code, text = probes.healthz(READY, 221.0, 120.0)
    assert code == 503
    assert text.startswith("stalled: no reconcile pass ended for 121 s (more than 120 s)")


@pytest.mark.parametrize(
    ("vitals", "said"),
    [
        (
            probes.Vitals(),
            (
                "not ready: waiting for the fabric lock, which another drctl on this state dir "
                "holds (drctl apply, or a second daemon): stop it, or give this one --lock"
            ),
        ),
        (
            probes.Vitals(started=True, refused="finance.yaml:8: unknown key 'grups'"),
            "not ready: no valid revision in force: finance.yaml:8: unknown key 'grups'",
        ),
        (
            probes.Vitals(started=True),
            "not ready: no valid revision in force: no revision read yet",
        ),
        (
            probes.Vitals(started=True, revision_in_force="abc", state_problem="disk full"),
            "not ready: starts nothing: disk full",
        ),
        (
            probes.Vitals(started=True, revision_in_force="abc", blind="vault: timed out"),
            "not ready: no fabric answers: vault: timed out",
        ),
    ],
)
def test_readiness_says_what_it_waits_for(vitals: probes.Vitals, said: str) -> None:
    assert probes.readyz(vitals) == (503, said)


def test_a_state_dir_it_cannot_use_before_the_lock_is_said_not_the_lock() -> None:
    stuck = probes.Vitals(state_problem="cannot make the state dir /proc/nope: No such file")
    assert probes.readyz(stuck) == (
        503,
        "not ready: cannot use the state dir: cannot make the state dir /proc/nope: No such file",
    )


def test_a_standby_replica_is_ready_it_serves_its_own_observation() -> None:
    standby = probes.Vitals(started=True, revision_in_force="abc", role="standby replica")
    assert probes.readyz(standby) == (200, "ready: revision abc in force, as standby replica")
