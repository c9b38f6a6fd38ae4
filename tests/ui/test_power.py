"""How `drctl status` and `drctl plan` show power: `running` as before, `power` per site beside it.

`running` keeps listing the sites where a copy is known to run; `power`
names Running, Off or Unknown per site, and `powerSeenAt` says when the
fabric last saw a power it cannot tell now. The text marks Unknown `rtm?`.
"""

from __future__ import annotations

import io
import json
from typing import Any

from builders import NOW, UNKNOWN_SINCE, desired, observed, vm, want

from reconciler.core import plan
from reconciler.ui import report


def _plan() -> plan.Plan:
    """web01 at rest; web02 and web03 at ams with rtm's power unknown; batch's own site unknown."""
    wanted = desired(want("web01"), want("web02"), want("web03"), want("batch", replication=None))
    seen = observed(
        vm("web01"),
        vm("web02", unknown=("rtm",)),
        vm("web03", unknown=("rtm",)),
        vm("batch", replication=None, unknown=("ams",)),
    )
    return plan.build_plan(wanted, seen, NOW)


def _observed(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in document["vms"] if v["name"] == name)["observed"]
    return found


def test_status_json_keeps_running_and_adds_power_per_site() -> None:
    document = report.status_json(_plan(), "abc123")
    web01, web02, batch = (_observed(document, n) for n in ("web01", "web02", "batch"))
    assert (web01["running"], web01["power"]) == (["ams"], {"ams": "Running", "rtm": "Off"})
    assert "powerSeenAt" not in web01
    assert (web02["running"], web02["power"]) == (["ams"], {"ams": "Running", "rtm": "Unknown"})
    assert web02["powerSeenAt"] == UNKNOWN_SINCE.isoformat(timespec="microseconds")
    assert (batch["running"], batch["power"]) == ([], {"ams": "Unknown"})
    # The new keys come after every existing one.
    assert list(web02)[-2:] == ["power", "powerSeenAt"]


def test_plan_json_lines_write_the_same_power_as_plan_json() -> None:
    built = _plan()
    streamed = json.loads("".join(report.plan_json_lines(built, "abc123")))
    assert json.dumps(streamed) == json.dumps(report.plan_json(built, "abc123"))
    assert _observed(streamed, "web01")["power"] == {"ams": "Running", "rtm": "Off"}
    assert _observed(streamed, "web03")["power"] == {"ams": "Running", "rtm": "Unknown"}


def test_status_text_marks_unknown_power_briefly() -> None:
    out = io.StringIO()
    report.print_status(_plan(), "abc123", out)
    rows = {line.split()[1]: line for line in out.getvalue().splitlines()[2:-1]}
    assert "ams ams->rtm runs ams,rtm?" in rows["web02"]
    assert "ams off runs ams?" in rows["batch"]
    assert rows["web01"].split()[4:6] == ["ams", "ams->rtm"]
    assert rows["web01"].split()[6] == "Converged"
    assert "WaitingForSite" in rows["web02"]
