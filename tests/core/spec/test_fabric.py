"""Fabric documents: which fabric each plan runs on, and every error with its file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.errors import SpecError
from reconciler.gitops import specdir


def fabric(name: str, sites: str = "{ams: {}, rtm: {}}", kind: str = "simulator: {}") -> str:
    return textwrap.dedent(f"""\
        apiVersion: drctl/v1
        kind: Fabric
        metadata: {{name: {name}}}
        spec:
          {kind}
          sites: {sites}
        """)


def plan(name: str, vm: str, fabric_line: str = "", sites: str = "[ams, rtm]") -> str:
    return textwrap.dedent(f"""\
        apiVersion: drctl/v1
        kind: RecoveryPlan
        metadata: {{name: {name}}}
        spec:
          {fabric_line}
          sites: {sites}
          defaults: {{activeSite: ams}}
          vms:
            - name: {vm}
        """)


def problems(directory: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(directory)
    return [str(p) for p in caught.value.problems]


def located(directory: Path) -> list[tuple[str, int, str]]:
    found = []
    for problem in problems(directory):
        file, line, message = problem.split(":", 2)
        found.append((Path(file).name, int(line), message.strip()))
    return found


def test_plans_name_their_fabric_or_take_the_only_one(tmp_path: Path) -> None:
    (tmp_path / "fabrics.yaml").write_text(fabric("lab1") + "---\n" + fabric("lab2"))
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a", "fabric: lab1"))
    (tmp_path / "b.yaml").write_text(plan("b", "vm-b", "fabric: lab2"))
    desired = specdir.load_specs(tmp_path)
    assert {p.name: p.fabric for p in desired.plans} == {"a": "lab1", "b": "lab2"}
    assert [(f.name, f.kind, f.sites) for f in desired.fabrics] == [
        ("lab1", "simulator", ("ams", "rtm")),
        ("lab2", "simulator", ("ams", "rtm")),
    ]

    one = tmp_path / "one"
    one.mkdir()
    (one / "lab.yaml").write_text(fabric("lab"))
    (one / "a.yaml").write_text(plan("a", "vm-a"))
    assert [p.fabric for p in specdir.load_specs(one).plans] == ["lab"]


def test_without_a_fabric_document_plans_use_the_embedded_simulator(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a"))
    desired = specdir.load_specs(tmp_path)
    assert [p.fabric for p in desired.plans] == [EMBEDDED_FABRIC]
    assert desired.fabrics == ()


def test_a_plan_naming_a_missing_fabric_is_an_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab"))
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a", "fabric: lba"))
    assert located(tmp_path) == [
        (
            "a.yaml",
            5,
            (
                "plan 'a' runs on fabric 'lba', which no Fabric document declares: "
                "the specs declare lab"
            ),
        )
    ]


def test_two_fabrics_and_a_plan_that_names_none_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "fabrics.yaml").write_text(fabric("lab1") + "---\n" + fabric("lab2"))
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a"))
    assert located(tmp_path) == [
        (
            "a.yaml",
            4,
            (
                "plan 'a' does not say which fabric it runs on and the specs declare 2 "
                "(lab1, lab2): add spec.fabric"
            ),
        )
    ]


def test_a_site_the_fabric_does_not_declare_is_an_error_at_the_site(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab"))
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a", "fabric: lab", sites="[ams, lon]"))
    (file, line, message), *_ = located(tmp_path)
    assert (file, line) == ("a.yaml", 6)
    assert message.startswith(
        "site 'lon' of plan 'a' is not a site of fabric 'lab' (ams, rtm): declare it in"
    )


def test_an_unknown_fabric_kind_says_which_kinds_there_are(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind="vmware: {}"))
    assert located(tmp_path) == [
        (
            "lab.yaml",
            5,
            (
                "unknown fabric kind 'vmware' in spec: a Fabric declares exactly one of "
                "simulator (and its sites)"
            ),
        ),
    ]


def test_a_fabric_without_a_kind_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind=""))
    assert located(tmp_path) == [
        ("lab.yaml", 4, "a Fabric declares exactly one kind (simulator), found 0")
    ]


def test_a_literal_secret_is_refused_with_how_to_reference_it(tmp_path: Path) -> None:
    text = fabric("lab", kind="simulator: {password: hunter2}")
    (tmp_path / "lab.yaml").write_text(text)
    assert located(tmp_path) == [
        (
            "lab.yaml",
            5,
            (
                "'password' holds a literal secret: a Fabric document never holds one (specs "
                "live in git); reference it instead, e.g. passwordEnv: DRCTL_PASSWORD (an "
                "environment variable's name) or passwordFile: /etc/drctl/password (a file's path)"
            ),
        )
    ]
    # The secret itself is never repeated back (it would reach logs and CI output).
    assert "hunter2" not in "\n".join(problems(tmp_path))


def test_a_reference_to_a_secret_is_not_a_secret(tmp_path: Path) -> None:
    # Refused only because the simulator takes no settings: not as a secret.
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind="simulator: {passwordEnv: HV_PW}"))
    ((_file, _line, message),) = located(tmp_path)
    assert message.startswith("unknown key 'passwordEnv' in spec.simulator")


def test_fabric_names_are_unique_and_embedded_is_reserved(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(fabric("lab") + "---\n" + fabric(EMBEDDED_FABRIC))
    (tmp_path / "b.yaml").write_text(fabric("lab"))
    messages = [m for _f, _l, m in located(tmp_path)]
    assert any(
        m.startswith("'embedded' is the name of the simulator in the state dir") for m in messages
    )
    assert any(m.startswith("fabric 'lab' is also defined in") for m in messages)


def test_validate_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab"))
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a", "fabric: nope"))
    assert cli.main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a.yaml'}:5: plan 'a' runs on fabric 'nope'" in err
