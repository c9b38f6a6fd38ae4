"""`drctl apply` on an ASR vault where two protected items share a friendly name: the VM entry's
`asrItem` says which one the plan means, and only that one moves (a real drctl process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e import providers

pytestmark = pytest.mark.e2e

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: SITE, replication: SITE->OTHER}
  policy: {commitAfterSeconds: 0}
  vms:
    - name: sql01
    - name: web01
      asrItem: ITEM
"""


def plan(site: str, item: str) -> str:
    other = "rtm" if site == "ams" else "ams"
    return (
        PLAN.replace("SITE->OTHER", f"{site}->{other}").replace("SITE", site).replace("ITEM", item)
    )


def test_only_the_item_asr_item_names_moves(tmp_path: Path) -> None:
    driver = providers.AsrDriver(tmp_path)
    try:
        driver.built.controls.rename("web02", "web01")  # two items named web01 now
        meant = driver.vault.by_friendly("web01").name  # the first of them
        items = driver.vault.items.values()
        (other,) = (i.name for i in items if i.friendly == "web01" and i.name != meant)
        # Without asrItem neither is touched.
        driver.want(plan("rtm", meant).replace(f"      asrItem: {meant}\n", ""))
        done = driver.apply("--timeout", "5")
        assert done.returncode == 1
        assert "2 VMs of the fabric are named 'web01'" in done.stderr
        assert [s for s in driver.started() if s[0] == "web01"] == []

        driver.want(plan("rtm", meant))
        done = driver.apply("--timeout", "30")
        assert done.returncode == 0, done.stdout + done.stderr
        assert driver.vms()["web01"]["phase"] == "Converged"
        item = driver.vault.items[meant]
        assert (item.state.active_site, item.state.direction) == ("rtm", "rtm->ams")
        # The other web01 was never touched: no request named it.
        assert driver.vault.items[other].state.active_site == "ams"
        assert [r.path for r in driver.server.seen("POST", other)] == []

        # An asrItem that is not web01's item: Blocked with why, nothing sent.
        sql = driver.vault.by_friendly("sql01").name
        posts = driver.server.count("POST")
        driver.want(plan("ams", sql))
        done = driver.apply("--timeout", "5")
        assert done.returncode == 1
        assert f"asrItem '{sql}' is the item the fabric names 'sql01', not 'web01'" in done.stderr
        assert [s for s in driver.started()[posts:] if s[0] == "web01"] == []
    finally:
        driver.close()
