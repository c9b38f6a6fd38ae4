"""`drctl run --require-signed-commits` as a real process on a real git clone, with real SSH
signatures: an unsigned commit moves nothing and `drctl status` says why, then the same
move signed is applied, and `drctl audit` says who signed it."""

from __future__ import annotations

import json

import pytest
from e2e.harness import Site, git, three_tier, wait_until
from signing import Keys, Signer

pytestmark = pytest.mark.e2e


def sign_head(site: Site, signer: Signer) -> str:
    """Sign the upstream's newest commit in its place, and reset the clone to it (as a
    git-sync sidecar follows a force push); returns the signed commit."""
    git(site.upstream, *signer.options, "commit", "-q", "--amend", "--no-edit", "-S")
    git(site.watched, "fetch", "-q")
    git(site.watched, "reset", "-q", "--hard", "origin/main")
    return git(site.upstream, "rev-parse", "HEAD")


def test_an_unsigned_failover_moves_nothing_until_it_is_signed(site: Site, keys: Keys) -> None:
    bob = keys.ssh("bob", "bob@example.com")
    keys.trust(bob)
    first = sign_head(site, bob)
    site.start("--require-signed-commits", "--allowed-signers", str(keys.allowed))
    wait_until(
        "the signed revision in force",
        lambda: site.metric('drctl_spec_revision_info{revision="' + first + '"}') == 1,
    )
    assert site.metric("drctl_spec_revision_trusted") == 1

    unsigned = site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
    site.pull()
    wait_until(
        "the unsigned revision judged", lambda: site.metric("drctl_spec_revision_trusted") == 0
    )
    status = site.status()
    assert status["daemon"]["revisionInForce"] == first
    (why,) = status["daemon"]["revisionUntrusted"]["reasons"]
    assert why.startswith(
        f"commit {unsigned[:12]} ('fail finance over to rtm', committed by Ops <ops@example.com>) "
        "has no signature"
    )
    finance = [vm for vm in status["vms"] if vm["plan"] == "finance"]
    assert {vm["phase"] for vm in finance} == {"Blocked"}
    assert all(
        vm["reason"] == f"not applied, revision {first} stays in force: {why}" for vm in finance
    )
    assert {vm["phase"] for vm in status["vms"] if vm["plan"] == "hr"} == {"Converged"}
    assert site.jobs() == []  # nothing moved, nothing stopped
    events = [json.loads(line) for line in site.log_text().splitlines() if line.startswith("{")]
    assert any(
        e.get("event") == "revision_untrusted" and e.get("revision") == unsigned for e in events
    )

    signed = sign_head(site, bob)
    converged = 'drctl_plan_converged{plan="finance"}'
    wait_until(
        "finance converged at rtm",
        lambda: (
            site.metric(f'drctl_spec_revision_info{{revision="{signed}"}}') == 1
            and site.metric(converged) == 1
        ),
        timeout=60,
    )
    assert site.metric("drctl_spec_revision_trusted") == 1
    # daemon.json is written after the pass's metrics: wait for it, never race it.
    wait_until(
        "daemon.json without an untrusted revision",
        lambda: json.loads((site.state / "daemon.json").read_text())["revisionUntrusted"] is None,
    )

    audit = site.drctl("audit", str(site.specs), "--allowed-signers", str(keys.allowed))
    block = audit.stdout.split(signed[:12], 1)[1]
    assert block.splitlines()[1] == f"  signature: good by bob@example.com, key {bob.key}"
