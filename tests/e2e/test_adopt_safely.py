"""A real `drctl run --adopt-safely`: the first commit that would move VMs waits for another.

The daemon watches a clone; the first revision (everything where it runs)
goes in force; a commit failing finance over is pulled and kept out, as
`drctl status` says, with no job in the fabric; an empty commit pulled after
it confirms it and finance moves. The rule's cases are tests/daemon/test_adoption.py.
"""

from __future__ import annotations

from e2e.harness import Site, git, three_tier, wait_until


def test_the_first_moving_commit_waits_for_a_second_one(site: Site) -> None:
    site.start("--adopt-safely")
    wait_until("the first pass", lambda: site.metric('drctl_plan_converged{plan="finance"}') == 1)

    moving = site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
    site.pull()
    wait_until("the move held back", lambda: site.metric("drctl_revision_refused") == 1)

    table = site.drctl("status", str(site.specs)).stdout
    assert (
        f"newest revision {moving} refused, kept out: adopt-safely: revision {moving} would "
        "move 5 VMs (finance/sql01, finance/app01, finance/app02, finance/web01, "
        "finance/web02); commit again to confirm (any new commit)"
    ) in table
    assert site.jobs() == []

    git(site.upstream, "commit", "-q", "--allow-empty", "-m", "confirm: finance to rtm")
    site.pull()
    wait_until("finance converged at rtm", lambda: site.converged_at("rtm"), timeout=60)
    assert site.metric("drctl_revision_refused") == 0
    assert f"confirms the move {moving} held back; it goes in force" in site.log_text()
