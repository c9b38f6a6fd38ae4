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
    assert located(tmp_path) == [
        (
            "a.yaml",
            6,
            (
                "site 'lon' of plan 'a' is not a site of fabric 'lab' (ams, rtm): declare it "
                f"in {tmp_path / 'lab.yaml'} or use one of those"
            ),
        )
    ]


def test_an_unknown_fabric_kind_says_which_kinds_there_are(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind="vmware: {}"))
    assert located(tmp_path) == [
        (
            "lab.yaml",
            5,
            (
                "unknown fabric kind 'vmware' in spec: a Fabric declares exactly one of "
                "simulator, asr, hyperv (and its sites)"
            ),
        ),
    ]


def test_a_fabric_without_a_kind_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind=""))
    assert located(tmp_path) == [
        ("lab.yaml", 4, "a Fabric declares exactly one kind (simulator, asr, hyperv), found 0")
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
    assert located(tmp_path) == [
        (
            "a.yaml",
            10,
            (
                "'embedded' is the name of the simulator in the state dir that plans use "
                "when no Fabric is declared: choose another name"
            ),
        ),
        (
            "b.yaml",
            3,
            (
                f"fabric 'lab' is also defined in {tmp_path / 'a.yaml'}: fabric names must "
                "be unique, rename one"
            ),
        ),
    ]


NAME_RULE = "use letters, digits, '.', '_' or '-', starting with a letter or digit"


@pytest.mark.parametrize("name", ["../../etc", "a/b", ".lab", "..", "-lab", "lab 1"])
def test_a_fabric_name_must_be_safe_as_a_directory_and_a_job_id_prefix(
    tmp_path: Path, name: str
) -> None:
    """A Fabric's name becomes <state-dir>/fabrics/<name> and the prefix of its job ids."""
    (tmp_path / "lab.yaml").write_text(fabric(f'"{name}"'))
    assert located(tmp_path) == [("lab.yaml", 3, f"fabric name {name!r} is not valid: {NAME_RULE}")]


def test_a_plan_naming_its_fabric_with_a_bad_name_is_an_error_at_the_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab"))
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a", "fabric: ../lab"))
    assert located(tmp_path) == [("a.yaml", 5, f"fabric name '../lab' is not valid: {NAME_RULE}")]


def test_a_bad_site_name_of_a_fabric_is_explained(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", sites='{ams: {}, "a/b": {}}'))
    assert located(tmp_path) == [("lab.yaml", 6, f"site name 'a/b' is not valid: {NAME_RULE}")]


@pytest.mark.parametrize("command", [["show"], ["site-down", "ams"], ["reachable"]])
def test_fabric_commands_refuse_a_fabric_name_that_is_not_safe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    args = ["fabric", *command, "--fabric", "../../etc", "--state-dir", str(tmp_path / "s")]
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"drctl fabric {command[0]}: error: argument --fabric: "
        f"fabric name '../../etc' is not valid: {NAME_RULE}"
    )
    assert list(tmp_path.iterdir()) == []


def refused(key: str, env: str, file: str) -> str:
    return (
        f"'{key}' holds a literal secret: a Fabric document never holds one (specs live in "
        f"git); reference it instead, e.g. {key}Env: {env} (an environment variable's name) "
        f"or {key}File: /etc/drctl/{file} (a file's path)"
    )


@pytest.mark.parametrize(
    ("setting", "key", "env", "file"),
    [
        ("token: [abc-123]", "token", "DRCTL_TOKEN", "token"),
        ('apiKeys: ["abc-123", "def-456"]', "apiKeys", "DRCTL_API_KEYS", "api-keys"),
        ("credential: abc-123", "credential", "DRCTL_CREDENTIAL", "credential"),
        ("credentials: [[abc-123]]", "credentials", "DRCTL_CREDENTIALS", "credentials"),
        (
            '"connectionString": "Server=db;Password=abc-123"',
            "connectionString",
            "DRCTL_CONNECTION_STRING",
            "connection-string",
        ),
        ("passphrase: abc-123", "passphrase", "DRCTL_PASSPHRASE", "passphrase"),
        ("privateKey: abc-123", "privateKey", "DRCTL_PRIVATE_KEY", "private-key"),
        ("passwordValue: abc-123", "passwordValue", "DRCTL_PASSWORD_VALUE", "password-value"),
        ("clientSecret: abc-123", "clientSecret", "DRCTL_CLIENT_SECRET", "client-secret"),
        ("sharedKey: 4711", "sharedKey", "DRCTL_SHARED_KEY", "shared-key"),
    ],
)
def test_every_kind_of_literal_secret_is_refused_without_echoing_it(
    tmp_path: Path, setting: str, key: str, env: str, file: str
) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind=f"simulator: {{{setting}}}"))
    found = located(tmp_path)
    assert found == [("lab.yaml", 5, refused(key, env, file))]
    assert not any("abc-123" in m or "4711" in m for _f, _l, m in found)


def test_a_secret_in_a_site_is_refused(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", sites="{ams: {password: abc-123}, rtm: {}}"))
    assert located(tmp_path) == [("lab.yaml", 6, refused("password", "DRCTL_PASSWORD", "password"))]


def test_public_keys_are_not_secrets(tmp_path: Path) -> None:
    # Refused only because the simulator takes no settings: not as secrets.
    setting = 'simulator: {publicKey: "ssh-ed25519 AAAA", sshHostKey: "ssh-rsa BBBB"}'
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind=setting))
    assert located(tmp_path) == [
        ("lab.yaml", 5, "unknown key 'publicKey' in spec.simulator: remove it or fix its spelling"),
        (
            "lab.yaml",
            5,
            "unknown key 'sshHostKey' in spec.simulator: remove it or fix its spelling",
        ),
    ]


def test_site_names_are_never_taken_for_secrets(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab", sites="{turkey: 1, monkey: yes}"))
    assert located(tmp_path) == [
        ("lab.yaml", 6, "spec.sites.monkey must be a mapping, not 'yes'"),
        ("lab.yaml", 6, "spec.sites.turkey must be a mapping, not 1"),
    ]

    named = tmp_path / "named"
    named.mkdir()
    (named / "lab.yaml").write_text(fabric("lab", sites="{key: {}, token: {}}"))
    assert [f.sites for f in specdir.load_specs(named).fabrics] == [("key", "token")]


@pytest.mark.parametrize("value", ['"abc-123!"', "4711", "[GOOD_NAME, abc-123]"])
def test_an_env_reference_must_name_a_variable(tmp_path: Path, value: str) -> None:
    """A secret pasted where its variable's name belongs is refused, and not echoed."""
    (tmp_path / "lab.yaml").write_text(fabric("lab", kind=f"simulator: {{passwordEnv: {value}}}"))
    found = located(tmp_path)
    assert found == [
        (
            "lab.yaml",
            5,
            (
                "the value of 'passwordEnv' looks like a secret value, not the name of an "
                "environment variable: write the variable's name (letters, digits and '_', "
                "e.g. passwordEnv: DRCTL_PASSWORD) and put the secret in it"
            ),
        )
    ]
    assert not any("abc-123" in m or "4711" in m for _f, _l, m in found)


def test_validate_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "lab.yaml").write_text(fabric("lab"))
    (tmp_path / "a.yaml").write_text(plan("a", "vm-a", "fabric: nope"))
    assert cli.main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a.yaml'}:5: plan 'a' runs on fabric 'nope'" in err
