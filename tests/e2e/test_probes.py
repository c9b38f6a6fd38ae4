"""/healthz and /readyz on a real `drctl run`: what systemd or Kubernetes probes see.

Ready once a revision is in force and the fabric answers; an invalid newer commit keeps
it ready (the revision in force still acts); no fabric yet is alive but not ready.
"""

from __future__ import annotations

import pytest
from e2e.harness import Site, probe, three_tier, wait_until

pytestmark = pytest.mark.e2e


def test_a_converging_daemon_is_alive_and_ready_and_stays_ready_through_a_typo(
    site: Site,
) -> None:
    site.start()
    wait_until("finance converged", lambda: site.converged_at("ams"))
    code, text = probe(site.metrics_port, "/healthz")
    assert code == 200 and text.startswith("ok: last pass ended "), text
    code, text = probe(site.metrics_port, "/readyz")
    assert code == 200, text
    assert text.endswith(" in force, as the only daemon on its state dir\n")
    site.commit("a typo", {"finance.yaml": three_tier("rtm").replace("groups:", "grups:")})
    site.pull()
    wait_until("drctl_spec_valid 0", lambda: site.metric("drctl_spec_valid") == 0)
    assert probe(site.metrics_port, "/readyz")[0] == 200  # the revision in force still acts
    assert probe(site.metrics_port, "/nothing")[0] == 404


def test_a_daemon_without_its_fabric_is_alive_but_not_ready(site: Site) -> None:
    (site.state / "fabric.db").unlink()  # as on a fresh install: no `drctl fabric init` yet
    site.start()
    blind = "not ready: no fabric answers: no simulated fabric in "
    said = wait_until(
        "/readyz to say no fabric answers",
        lambda: (r := probe(site.metrics_port, "/readyz"))[1].startswith(blind) and r,
    )
    assert said[0] == 503
    assert "run drctl fabric init INVENTORY.yaml first" in said[1]
    assert probe(site.metrics_port, "/healthz")[0] == 200
    assert site.daemon is not None and site.daemon.poll() is None


def test_a_daemon_on_an_empty_specs_directory_is_not_ready_and_says_what_it_searched(
    site: Site,
) -> None:
    for name in ("finance.yaml", "hr.yaml"):
        (site.specs / name).unlink()  # a wrong or empty directory on the first start
    site.start()
    said = wait_until(
        "/readyz to say the directory holds no plan",
        lambda: (
            (r := probe(site.metrics_port, "/readyz"))[0] == 503 and "no RecoveryPlan" in r[1] and r
        ),
    )
    assert said[1].startswith(
        f"not ready: no valid revision in force: {site.specs}: the spec directory holds no "
        "RecoveryPlan: searched no spec file"
    )
    assert site.metric("drctl_spec_valid") == 0
