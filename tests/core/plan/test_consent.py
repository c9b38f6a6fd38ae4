"""Consent to lose data, scoped to an event: away from a site until a time, or for one revision."""

from __future__ import annotations

from datetime import datetime, timedelta

from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import Phase, Provenance
from reconciler.core.state import Operation

# ams is dark; the fabric allows only an unplanned failover to rtm.
AMS_DOWN = observed(
    vm("sql01", "ams", allowed=frozenset({Operation.UNPLANNED_FAILOVER})), down=("ams",)
)


def decide(wanted: DesiredVM, revision: str | None = None) -> plan.VMPlan:
    built = plan.build_plan(
        desired(wanted), AMS_DOWN, NOW, provenance=Provenance(revision=revision)
    )
    (vp,) = built.vms
    return vp


def scoped(*, window: tuple[str, datetime] | None = None, revision: str | None = None) -> DesiredVM:
    return want("sql01", "rtm")._replace(data_loss_window=window, data_loss_revision=revision)


def test_a_window_away_from_the_dark_site_allows_the_unplanned_failover() -> None:
    vp = decide(scoped(window=("ams", NOW + timedelta(hours=2))))
    assert vp.action is not None
    assert vp.action.operation is Operation.UNPLANNED_FAILOVER
    assert "allowed by allowDataLoss from ams until" in vp.reason


def test_an_expired_window_is_ignored_and_says_so() -> None:
    until = NOW - timedelta(minutes=1)
    vp = decide(scoped(window=("ams", until)))
    assert vp.phase is Phase.BLOCKED
    assert vp.action is None
    assert f"allowDataLoss from ams expired at {until.isoformat()}." in vp.reason


def test_a_window_for_the_other_site_does_not_cover_this_failover() -> None:
    vp = decide(scoped(window=("rtm", NOW + timedelta(hours=2))))
    assert vp.phase is Phase.BLOCKED
    assert "allowDataLoss covers failovers away from rtm, not ams." in vp.reason


def test_consent_for_a_revision_holds_only_while_that_revision_is_in_force() -> None:
    wanted = scoped(revision="abc1234")
    allowed = decide(wanted, revision="abc1234" + "0" * 33)
    assert allowed.action is not None
    assert allowed.action.operation is Operation.UNPLANNED_FAILOVER
    other = decide(wanted, revision="def5678" + "0" * 33)
    assert other.phase is Phase.BLOCKED
    assert "allowDataLoss covers revision abc1234, not the one in force." in other.reason


def test_without_consent_the_reason_offers_the_scoped_form() -> None:
    vp = decide(want("sql01", "rtm"))
    assert vp.phase is Phase.BLOCKED
    assert "Commit allowDataLoss: {from: ams, until: <time>} in plan 'finance'" in vp.reason
