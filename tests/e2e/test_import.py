"""`drctl import` end to end: real `drctl import` and `drctl plan` processes on every provider.

For the simulator, the ASR test vault (the real SDK over HTTPS on
127.0.0.1; there with `--from-recovery-plans` and a recovery plan made in
the vault) and the emulated Hyper-V hosts: an operator has failed web02
over by hand (not committed) before the import; the import writes every
other VM where it runs, web02 as a comment saying why it is left out, and
`drctl plan --exit-code` on the result exits 0 with "no actions". The
simulator's case also imports an unprotected VM and refuses to overwrite a
file. The drivers are tests/e2e/providers.py's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import providers

FABRIC_OF = {"sim": "embedded", "asr": "contoso", "hyperv": "hv"}


@pytest.fixture(params=sorted(providers.DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[providers.Driver]:
    made = providers.DRIVERS[request.param](tmp_path)
    try:
        yield made
    finally:
        made.close()


def _import(d: providers.Driver, *extra: str) -> subprocess.CompletedProcess[str]:
    fabric = FABRIC_OF[d.name]
    return d.drctl(
        "import", "--fabric", fabric, "--plan", "finance", "--output", str(d.specs), *extra
    )


def _said(text: str) -> str:
    """A file's comments as one line, as a reader reads them across the wrapping."""
    return " ".join(line.strip().lstrip("#").strip() for line in text.splitlines())


def _make_recovery_plan(d: providers.AsrDriver) -> None:
    """An operator's recovery plan in the vault: the database, then app, then web."""
    with d.vault.lock:
        item = {vm: d.vault.by_friendly(vm) for vm in providers.VMS}
        groups = [["sql01"], ["app01", "app02"], ["web01", "web02"]]
        body = {
            "properties": {
                "groups": [
                    {
                        "groupType": "Boot",
                        "replicationProtectedItems": [
                            {"id": f"{d.vault.item_path(item[vm])}", "virtualMachineId": vm}
                            for vm in group
                        ],
                    }
                    for group in groups
                ]
            }
        }
        d.vault.write_plan("finance-rp", body, create=True)


def test_import_then_plan_proposes_nothing(driver: providers.Driver) -> None:
    """web02, failed over by hand and not committed, is left out as a comment: unmanaged."""
    driver.failover_by_hand("web02", "rtm")
    extra: tuple[str, ...] = ()
    if isinstance(driver, providers.AsrDriver):
        _make_recovery_plan(driver)
        extra = ("--from-recovery-plans",)

    done = _import(driver, *extra)

    assert done.returncode == 0, done.stdout + done.stderr
    name = "finance-rp" if extra else "finance"
    written = driver.specs / f"{name}.yaml"
    assert f"{written}: plan {name}, 4 VMs; left out: web02\n" in done.stderr
    text = written.read_text()
    assert "  defaults: {activeSite: ams, replication: ams->rtm}\n" in text
    assert "    # - name: web02\n" in text
    said = _said(text)
    assert (
        "web02 is left out, so that drctl leaves it alone: mid-failover: failed over to rtm" in said
    )
    if extra:
        assert "From the recovery plan 'finance-rp': its Boot groups, in boot order." in said
        assert "Add it (Boot group 3 of the recovery plan) once it is settled" in said
        assert (
            "  groups:\n"
            "    - {name: boot1, vms: [sql01]}\n"
            "    - {name: boot2, after: [boot1], vms: [app01, app02]}\n"
            "    - {name: boot3, after: [boot2], vms: [web01]}\n"
        ) in text

    planned = driver.drctl("plan", str(driver.specs), "--exit-code")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "no actions" in planned.stdout
    assert "4/4 VMs converged: converged" in planned.stdout
    as_json = json.loads(driver.drctl("plan", str(driver.specs), "--output", "json").stdout)
    assert as_json["actions"] == []
    assert as_json["unmanaged"] == ["web02"]


@pytest.mark.parametrize("driver", ["sim"], indirect=True)
def test_an_unprotected_vm_and_a_running_failover_on_the_simulator(
    driver: providers.Driver,
) -> None:
    """The unprotected VM is written `replication: off`; the one failing over is left out."""
    assert isinstance(driver, providers.SimDriver)
    inventory = json.loads((driver.root / "inventory.yaml").read_text())
    inventory["vms"].append({"name": "batch", "activeSite": "rtm", "replication": "off"})
    inventory["timings"]["plannedFailover"] = 3600  # still running when drctl import looks
    (driver.root / "inventory.yaml").write_text(json.dumps(inventory))
    assert driver.drctl("fabric", "init", str(driver.root / "inventory.yaml")).returncode == 0
    moving = driver.drctl("fabric", "failover", "app01", "rtm")
    assert moving.returncode == 0, moving.stdout + moving.stderr

    done = _import(driver)

    assert done.returncode == 0, done.stdout + done.stderr
    text = (driver.specs / "finance.yaml").read_text()
    assert "    - {name: batch, activeSite: rtm, replication: off}\n" in text
    said = _said(text)
    assert "unprotected: batch runs at rtm with no replication." in said
    assert (
        "app01 is left out, so that drctl leaves it alone: mid-failover: PlannedFailover to rtm runs"
        in said
    )
    planned = driver.drctl("plan", str(driver.specs), "--output", "json")
    as_json = json.loads(planned.stdout)
    assert as_json["actions"] == []
    assert as_json["unmanaged"] == ["app01"]
    validated = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", str(driver.specs)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert validated.returncode == 0, validated.stderr
    assert "finance.yaml:19: warning: turning replication off" in validated.stderr


@pytest.mark.parametrize("driver", ["sim"], indirect=True)
def test_an_existing_file_is_never_overwritten(driver: providers.Driver, tmp_path: Path) -> None:
    """Exit 2, the file as it was, nothing else written; stdout holds the specs without --output."""
    other = tmp_path / "other"
    other.mkdir()
    kept = (
        "apiVersion: drctl/v1\nkind: RecoveryPlan\nmetadata: {name: kept}\n"
        "spec:\n  sites: [ams, rtm]\n  vms: [{name: zz01, activeSite: ams}]\n"
    )
    (other / "finance.yaml").write_text(kept)

    done = driver.drctl(
        "import", "--fabric", "embedded", "--plan", "finance", "--output", str(other)
    )

    assert done.returncode == 2
    assert (
        f"drctl: {other}/finance.yaml already exists: drctl import never overwrites a spec; nothing was written"
        in done.stderr
    )
    assert (other / "finance.yaml").read_text() == kept
    assert sorted(p.name for p in other.iterdir()) == ["finance.yaml"]

    printed = driver.drctl("import", "--fabric", "embedded", "--vms", "web*")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith(
        "# Imported by `drctl import --fabric embedded --vms 'web*'` at "
    )
    assert "metadata: {name: embedded}" in printed.stdout
    assert "    - name: web01\n    - name: web02\n" in printed.stdout
