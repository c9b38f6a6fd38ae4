"""The desired-state spec: what loads, and every validation error with its file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.errors import SpecError
from reconciler.gitops import specdir

VALID = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  policy: {allowDataLoss: false, maxParallel: 10}
  groups:
    - {name: db,  vms: [sql01]}
    - {name: web, after: [db], vms: [web01, web02]}
  vms:
    - name: sql01
    - name: web01
      activeSite: rtm
      replication: rtm->ams
    - name: web02
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(directory: Path) -> list[str]:
    """The `file:line: message` lines a user sees for an invalid directory."""
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(directory)
    return [str(p) for p in caught.value.problems]


def one_problem(directory: Path) -> tuple[str, int, str]:
    found = problems(directory)
    assert len(found) == 1, found
    file, line, message = found[0].split(":", 2)
    return Path(file).name, int(line), message.strip()


def test_valid_plan_resolves_defaults_and_overrides(tmp_path: Path) -> None:
    write(tmp_path, "finance.yaml", VALID)
    desired = specdir.load_specs(tmp_path)
    (plan,) = desired.plans
    assert plan.name == "finance"
    assert plan.sites == ("ams", "rtm")
    assert plan.max_parallel == 10
    vms = {vm.name: vm for vm in plan.vms}
    assert vms["sql01"].active_site == "ams"
    assert vms["sql01"].replication_text == "ams->rtm"
    assert vms["sql01"].group == "db"
    assert vms["web01"].active_site == "rtm"
    assert vms["web01"].replication_text == "rtm->ams"
    assert vms["web02"].group == "web"


def test_max_parallel_defaults_to_ten(tmp_path: Path) -> None:
    write(
        tmp_path, "p.yaml", VALID.replace("  policy: {allowDataLoss: false, maxParallel: 10}\n", "")
    )
    assert specdir.load_specs(tmp_path).plans[0].max_parallel == 10


@pytest.mark.parametrize("written", ["off", '"off"', "'off'", "false", "' off '"])
def test_off_means_replication_off_whatever_the_parser(tmp_path: Path, written: str) -> None:
    """A bare off (a boolean in YAML 1.1) and a quoted "off" mean the same."""
    text = VALID.replace("      replication: rtm->ams", f"      replication: {written}")
    write(tmp_path, "p.yaml", text)
    vms = {vm.name: vm for vm in specdir.load_specs(tmp_path).plans[0].vms}
    assert vms["web01"].replication is None
    assert vms["web01"].replication_text == "off"


def test_spaces_around_arrow_are_allowed_and_normalised(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("replication: ams->rtm}", "replication: ams -> rtm}"))
    vms = specdir.load_specs(tmp_path).plans[0].vms
    assert vms[0].replication_text == "ams->rtm"


def test_replication_defaults_to_active_site_towards_the_other(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace(", replication: ams->rtm}", "}"))
    vms = {vm.name: vm for vm in specdir.load_specs(tmp_path).plans[0].vms}
    assert vms["sql01"].replication_text == "ams->rtm"
    assert vms["web01"].replication_text == "rtm->ams"


def test_vm_policy_wins_over_plan_policy(tmp_path: Path) -> None:
    text = VALID.replace(
        "    - name: web02\n", "    - name: web02\n      policy: {allowDataLoss: true}\n"
    )
    write(tmp_path, "p.yaml", text)
    vms = {vm.name: vm for vm in specdir.load_specs(tmp_path).plans[0].vms}
    assert vms["web02"].allow_data_loss is True
    assert vms["sql01"].allow_data_loss is False


def test_several_documents_in_one_file(tmp_path: Path) -> None:
    second = VALID.replace("finance", "hr").replace("sql01", "hr01").replace("web0", "hrweb0")
    write(tmp_path, "p.yaml", VALID + "---\n" + second)
    assert [p.name for p in specdir.load_specs(tmp_path).plans] == ["finance", "hr"]


# --- one test per validation error: file, line and what to change ----------


def test_yaml_syntax_error(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", VALID.replace("  sites: [ams, rtm]", "  sites: [ams, rtm"))
    file, line, message = one_problem(tmp_path)
    assert file == "bad.yaml"
    assert line in {5, 6}
    assert message.startswith("YAML syntax error")


def test_unknown_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("    - name: web02\n", "    - name: web02\n      activSite: rtm\n"),
    )
    assert one_problem(tmp_path) == (
        "p.yaml",
        17,
        "unknown key 'activSite' in spec.vms[2]: remove it or fix its spelling",
    )


def test_unknown_key_in_policy(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("maxParallel: 10", "maxParalel: 10"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 7)
    assert "unknown key 'maxParalel' in spec.policy" in message


def test_wrong_api_version(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("drctl/v1", "drctl/v2"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 1)
    assert message == "apiVersion must be 'drctl/v1', not 'drctl/v2'"


def test_wrong_kind(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("kind: RecoveryPlan", "kind: Plan"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 2)
    assert message == "kind must be 'RecoveryPlan', not 'Plan'"


def test_active_site_not_in_sites(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("      activeSite: rtm", "      activeSite: fra"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 14)
    assert message == "activeSite 'fra' is not one of the plan's sites ['ams', 'rtm']"


def test_default_site_not_in_sites(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("{activeSite: ams, replication: ams->rtm}", "{activeSite: fra}"),
    )
    found = problems(tmp_path)
    assert (
        found[0]
        == f"{tmp_path}/p.yaml:6: activeSite 'fra' is not one of the plan's sites ['ams', 'rtm']"
    )


def test_replication_site_not_in_sites(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("      replication: rtm->ams", "      replication: rtm->fra"),
    )
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 15)
    assert message == "replication site 'fra' is not one of the plan's sites ['ams', 'rtm']"


def test_replication_source_must_be_the_active_site(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("      replication: rtm->ams", "      replication: ams->rtm"),
    )
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 15)
    assert message == (
        "replication ams->rtm must start at the active site: VM 'web01' runs at "
        "'rtm', so write rtm->ams or change activeSite"
    )


def test_moved_vm_inheriting_default_replication_is_an_error(tmp_path: Path) -> None:
    """Moving one VM without its replication would replicate from the wrong copy."""
    write(tmp_path, "p.yaml", VALID.replace("      replication: rtm->ams\n", ""))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 13)
    assert "VM 'web01' runs at 'rtm', so write rtm->ams" in message


def test_malformed_replication(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("      replication: rtm->ams", "      replication: rtm=>ams"),
    )
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 15)
    assert message == "replication must be '<from>-><to>' (e.g. ams->rtm) or off, not 'rtm=>ams'"


def test_duplicate_vm_names_in_one_plan(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("    - name: web02\n", "    - name: web02\n    - name: sql01\n"),
    )
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 17)
    assert message == "VM 'sql01' is listed twice in plan 'finance' (also entry 1): remove one"


def test_duplicate_vm_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    other = VALID.replace("finance", "hr").replace("web0", "hrweb0")
    write(tmp_path, "b.yaml", other)
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("b.yaml", 12)
    assert message == (
        f"VM 'sql01' is already in plan 'finance' ({tmp_path}/a.yaml): "
        "a VM belongs to one plan, remove one"
    )


def test_duplicate_plan_names(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    write(tmp_path, "b.yaml", VALID.replace("sql01", "x1").replace("web0", "y0"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("b.yaml", 3)
    assert message == (
        f"plan 'finance' is also defined in {tmp_path}/a.yaml: "
        "plan names must be unique, rename one"
    )


def test_duplicate_mapping_keys_are_rejected(tmp_path: Path) -> None:
    """PyYAML would silently keep the last one; drctl refuses the file."""
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("      activeSite: rtm\n", "      activeSite: rtm\n      activeSite: ams\n"),
    )
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 15)
    assert message == (
        "duplicate key 'activeSite' (first at line 14): a key may appear "
        "once per mapping, remove one"
    )


def test_group_naming_unknown_vm(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("vms: [web01, web02]", "vms: [web01, web03]"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 10)
    assert message == (
        "group 'web' names VM 'web03', which is not in spec.vms: "
        "add the VM or remove it from the group"
    )


def test_vm_in_two_groups(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("vms: [web01, web02]", "vms: [web01, sql01]"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 10)
    assert message == "VM 'sql01' is in groups 'db' and 'web': a VM belongs to one group"


def test_cycle_in_after(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("{name: db,  vms: [sql01]}", "{name: db, after: [web], vms: [sql01]}"),
    )
    file, line, message = one_problem(tmp_path)
    assert file == "p.yaml"
    assert line in {9, 10}
    assert message.startswith("groups form a cycle in 'after': ")
    assert "db" in message
    assert "web" in message
    assert message.endswith("remove one of these 'after' entries")


def test_after_naming_unknown_group(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("after: [db]", "after: [dbs]"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 10)
    assert message == "group 'web' comes after unknown group 'dbs': known groups are ['db', 'web']"


def test_vm_with_no_active_site_after_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        VALID.replace("  defaults: {activeSite: ams, replication: ams->rtm}\n", ""),
    )
    found = problems(tmp_path)
    assert (
        f"{tmp_path}/p.yaml:11: VM 'sql01' has no activeSite: set activeSite on the VM or spec.defaults.activeSite"
        in found
    )
    assert (
        f"{tmp_path}/p.yaml:15: VM 'web02' has no activeSite: set activeSite on the VM or spec.defaults.activeSite"
        in found
    )


def test_sites_must_be_two(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("[ams, rtm]", "[ams, rtm, fra]"))
    file, line, message = one_problem(tmp_path)
    assert (file, line) == ("p.yaml", 5)
    assert message.startswith("sites must name exactly two different sites")


def test_missing_required_key(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", VALID.replace("metadata: {name: finance}\n", ""))
    assert one_problem(tmp_path) == ("p.yaml", 1, "missing required key 'metadata' in the document")


def test_every_error_in_the_directory_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID.replace("drctl/v1", "drctl/v0"))
    write(tmp_path, "b.yaml", "a: [\n")
    found = problems(tmp_path)
    assert [Path(p.split(":")[0]).name for p in found] == ["a.yaml", "b.yaml"]


def test_validate_command_exit_codes_and_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    write(good, "p.yaml", VALID)
    assert cli.main(["validate", str(good)]) == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    write(bad, "p.yaml", VALID.replace("kind: RecoveryPlan", "kind: Plan"))
    capsys.readouterr()
    assert cli.main(["validate", str(bad)]) == 2
    assert capsys.readouterr().err == f"{bad}/p.yaml:2: kind must be 'RecoveryPlan', not 'Plan'\n"


def test_validate_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["validate"])
    assert caught.value.code == 2


def test_missing_directory_is_invalid_input(tmp_path: Path) -> None:
    assert cli.main(["validate", str(tmp_path / "nope")]) == 2
