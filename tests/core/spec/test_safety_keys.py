"""The spec's safety keys (commit gate, recovery point, scoped consent, confirmations) and warnings.

Each key loads to its value (the plan's default, a VM's own wins), each
invalid value is an error at its line saying what to change, and the two
warnings (standing consent, replication off unconfirmed) leave the spec valid.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.core.desired import DesiredState, DesiredVM
from reconciler.core.spec import resolve
from reconciler.errors import SpecError
from reconciler.gitops import specdir

# Line numbers below count from 1 at `apiVersion`.
PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  policy:
    maxParallel: 10
  vms:
    - name: sql01
    - name: web01
      activeSite: ams
"""
POLICY_LINE = 8  # the line after `policy:`: a key added there
ENTRY_LINE = 12  # the line after `- name: web01`, a key added there (one more per plan line)


def write(directory: Path, text: str) -> None:
    (directory / "p.yaml").write_text(text)


def load(tmp_path: Path, plan: str = "", entry: str = "", spec: str = "") -> DesiredState:
    write(tmp_path, with_keys(plan, entry, spec))
    return specdir.load_specs(tmp_path)


def with_keys(plan: str = "", entry: str = "", spec: str = "") -> str:
    """PLAN with `plan` lines in spec.policy, `entry` lines on web01, `spec` lines in spec."""
    text = PLAN.replace("  policy:\n", "  policy:\n" + _indent(plan, 4))
    text = text.replace("      activeSite: ams\n", _indent(entry, 6) + "      activeSite: ams\n")
    return text.replace("  sites: [ams, rtm]\n", "  sites: [ams, rtm]\n" + _indent(spec, 2))


def _indent(lines: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in lines.splitlines())


def vms(desired: DesiredState) -> dict[str, DesiredVM]:
    return {vm.name: vm for vm in desired.vms()}


def error(tmp_path: Path, plan: str = "", entry: str = "", spec: str = "") -> tuple[int, str]:
    """The one problem of PLAN with these keys, as (line, message) in p.yaml."""
    write(tmp_path, with_keys(plan, entry, spec))
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(tmp_path)
    (problem,) = caught.value.problems
    assert problem.file == str(tmp_path / "p.yaml")
    return problem.line, problem.message


# --- what each key loads to -----------------------------------------------


def test_a_plan_that_sets_no_safety_key_gets_the_defaults(tmp_path: Path) -> None:
    desired = load(tmp_path)
    (plan,) = desired.plans
    assert (plan.self_heal, plan.unordered_failover, plan.reprotect_after_unplanned) == (
        False,
        False,
        "wait",
    )
    for vm in desired.vms():
        assert (vm.commit, vm.commit_after_seconds, vm.commit_approved) == ("auto", 60.0, None)
        assert (vm.recovery_point, vm.discard_lost_writes) == ("latest", None)
        assert vm.confirm_disable_replication is False
        assert (vm.allow_data_loss, vm.data_loss_window, vm.data_loss_revision) == (
            False,
            None,
            None,
        )
    assert desired.warnings == ()


def test_plan_only_policies_load_onto_the_plan(tmp_path: Path) -> None:
    (plan,) = load(
        tmp_path, plan="selfHeal: true\nunorderedFailover: true\nreprotectAfterUnplanned: auto"
    ).plans
    assert (plan.self_heal, plan.unordered_failover, plan.reprotect_after_unplanned) == (
        True,
        True,
        "auto",
    )


def test_plan_commit_gate_applies_to_every_vm_and_a_vm_policy_wins(tmp_path: Path) -> None:
    got = vms(
        load(
            tmp_path,
            plan="commit: manual\ncommitAfterSeconds: 5",
            entry="policy: {commit: auto, commitAfterSeconds: 0}",
        )
    )
    assert (got["sql01"].commit, got["sql01"].commit_after_seconds) == ("manual", 5.0)
    assert (got["web01"].commit, got["web01"].commit_after_seconds) == ("auto", 0.0)


def test_commit_approved_and_discard_at_spec_level_and_the_vm_wins(tmp_path: Path) -> None:
    got = vms(
        load(
            tmp_path,
            spec="commitApproved: any\ndiscardLostWrites: job-1",
            entry="commitApproved: job-7\ndiscardLostWrites: job-9",
        )
    )
    assert (got["sql01"].commit_approved, got["sql01"].discard_lost_writes) == ("any", "job-1")
    assert (got["web01"].commit_approved, got["web01"].discard_lost_writes) == ("job-7", "job-9")


@pytest.mark.parametrize(
    "written",
    ["latest", "latestAppConsistent", "2025-01-31T18:00:00+01:00", "2025-01-31T17:00:00Z", "rp-42"],
)
def test_recovery_point_is_kept_as_written(tmp_path: Path, written: str) -> None:
    got = vms(load(tmp_path, entry=f"recoveryPoint: {written}"))
    assert got["web01"].recovery_point == written
    assert got["sql01"].recovery_point == "latest"


def test_consent_for_one_outage_is_a_window_not_standing_consent(tmp_path: Path) -> None:
    desired = load(tmp_path, plan="allowDataLoss: {from: ams, until: 2025-01-31T18:00:00+01:00}")
    until = datetime(2025, 1, 31, 18, tzinfo=timezone(timedelta(hours=1)))
    for vm in desired.vms():
        assert (vm.allow_data_loss, vm.data_loss_window, vm.data_loss_revision) == (
            False,
            ("ams", until),
            None,
        )
    assert desired.plans[0].allow_data_loss is False
    assert desired.warnings == ()


def test_consent_for_one_revision_is_kept_in_lower_case(tmp_path: Path) -> None:
    got = vms(load(tmp_path, entry="policy: {allowDataLoss: {revision: 0A1B2C3D}}"))
    assert (got["web01"].allow_data_loss, got["web01"].data_loss_revision) == (False, "0a1b2c3d")
    assert got["web01"].data_loss_window is None
    assert got["sql01"].data_loss_revision is None


def test_a_vm_consent_replaces_the_plan_consent_whatever_its_form(tmp_path: Path) -> None:
    got = vms(
        load(
            tmp_path,
            plan="allowDataLoss: {from: rtm, until: 2025-01-31T17:00:00Z}",
            entry="policy: {allowDataLoss: false}",
        )
    )
    assert got["sql01"].data_loss_window == ("rtm", datetime(2025, 1, 31, 17, tzinfo=UTC))
    assert (got["web01"].allow_data_loss, got["web01"].data_loss_window) == (False, None)


def test_standing_consent_keeps_its_meaning(tmp_path: Path) -> None:
    got = vms(load(tmp_path, plan="allowDataLoss: true", entry="policy: {allowDataLoss: false}"))
    assert (got["sql01"].allow_data_loss, got["sql01"].data_loss_window) == (True, None)
    assert got["web01"].allow_data_loss is False


def test_confirmed_replication_off_loads_without_a_warning(tmp_path: Path) -> None:
    desired = load(tmp_path, entry="replication: off\nconfirmDisableReplication: true")
    web01 = vms(desired)["web01"]
    assert (web01.replication, web01.confirm_disable_replication) == (None, True)
    assert desired.warnings == ()


# --- one test per invalid value: its line and what to change ----------------


def test_unknown_commit_mode(tmp_path: Path) -> None:
    assert error(tmp_path, plan="commit: later") == (
        POLICY_LINE,
        "spec.policy.commit must be 'auto' or 'manual', not 'later'",
    )


def test_negative_commit_after_seconds(tmp_path: Path) -> None:
    assert error(tmp_path, entry="policy: {commitAfterSeconds: -5}") == (
        ENTRY_LINE,
        "spec.vms[1].policy.commitAfterSeconds must be 0 or more, not -5",
    )


def test_unknown_reprotect_mode(tmp_path: Path) -> None:
    assert error(tmp_path, plan="reprotectAfterUnplanned: later") == (
        POLICY_LINE,
        "spec.policy.reprotectAfterUnplanned must be 'wait' or 'auto', not 'later'",
    )


def test_self_heal_must_be_a_boolean(tmp_path: Path) -> None:
    assert error(tmp_path, plan="selfHeal: 'yes'") == (
        POLICY_LINE,
        "spec.policy.selfHeal must be true or false, not 'yes'",
    )


def test_a_plan_wide_policy_on_a_vm_says_where_it_goes(tmp_path: Path) -> None:
    assert error(tmp_path, entry="policy: {selfHeal: true}") == (
        ENTRY_LINE,
        (
            "'selfHeal' does not go in spec.vms[1].policy: set it in spec.policy "
            "(it applies to the whole plan)"
        ),
    )


def test_a_vm_key_in_the_policy_says_where_it_goes(tmp_path: Path) -> None:
    assert error(tmp_path, plan="recoveryPoint: latest") == (
        POLICY_LINE,
        "'recoveryPoint' does not go in spec.policy: set it on a VM entry (spec.vms[N])",
    )


def test_allow_data_loss_of_no_known_form(tmp_path: Path) -> None:
    assert error(tmp_path, plan="allowDataLoss: 'yes'") == (
        POLICY_LINE,
        (
            "spec.policy.allowDataLoss must be true, false, {from: SITE, until: TIME} or "
            "{revision: SHA}, not 'yes'"
        ),
    )


def test_unknown_key_in_scoped_consent(tmp_path: Path) -> None:
    assert error(tmp_path, plan="allowDataLoss:\n  form: ams\n  until: 2025-01-31T17:00:00Z") == (
        POLICY_LINE + 1,
        "unknown key 'form' in spec.policy.allowDataLoss: remove it or fix its spelling",
    )


def test_consent_from_a_site_that_is_not_the_plans(tmp_path: Path) -> None:
    plan = "allowDataLoss:\n  from: fra\n  until: 2025-01-31T17:00:00Z"
    assert error(tmp_path, plan=plan) == (
        POLICY_LINE + 1,
        "allowDataLoss.from 'fra' is not one of the plan's sites ['ams', 'rtm']",
    )


def test_consent_until_that_is_not_an_iso_time(tmp_path: Path) -> None:
    plan = "allowDataLoss:\n  from: ams\n  until: 2025-13-31T18:00:00+01:00"
    assert error(tmp_path, plan=plan) == (
        POLICY_LINE + 2,
        (
            "allowDataLoss.until '2025-13-31T18:00:00+01:00' is not an ISO 8601 time: "
            "write it like 2025-01-31T18:00:00+01:00"
        ),
    )


def test_consent_until_without_an_offset(tmp_path: Path) -> None:
    entry = "policy:\n  allowDataLoss: {from: ams, until: 2025-01-31T18:00:00}"
    assert error(tmp_path, entry=entry) == (
        ENTRY_LINE + 1,
        (
            "allowDataLoss.until '2025-01-31T18:00:00' has no UTC offset: add one (e.g. +01:00 "
            "or Z), so that it names the same instant wherever drctl runs"
        ),
    )


def test_consent_from_without_until(tmp_path: Path) -> None:
    assert error(tmp_path, plan="allowDataLoss: {from: ams}") == (
        POLICY_LINE,
        (
            "allowDataLoss as a mapping needs until: TIME beside from (when the consent ends, "
            "e.g. 2025-01-31T18:00:00+01:00)"
        ),
    )


def test_consent_with_both_forms(tmp_path: Path) -> None:
    plan = "allowDataLoss: {revision: abc1234, from: ams, until: 2025-01-31T17:00:00Z}"
    assert error(tmp_path, plan=plan) == (
        POLICY_LINE,
        (
            "allowDataLoss gives either from and until (one outage) or revision (one revision "
            "of the spec), not both: keep one"
        ),
    )


@pytest.mark.parametrize("revision", ["xyz1234", "abc12", "a" * 41])
def test_consent_revision_that_is_not_a_commit_id(tmp_path: Path, revision: str) -> None:
    assert error(tmp_path, plan=f"allowDataLoss:\n  revision: {revision}") == (
        POLICY_LINE + 1,
        (
            f"allowDataLoss.revision '{revision}' is not a git commit id: write 7 to 40 hex "
            "digits (git log --format=%h prints one)"
        ),
    )


def test_consent_revision_of_digits_only_must_be_quoted(tmp_path: Path) -> None:
    """YAML reads 1234567 as a number (and 0123456 would lose its zero)."""
    assert error(tmp_path, plan="allowDataLoss:\n  revision: 1234567") == (
        POLICY_LINE + 1,
        "spec.policy.allowDataLoss.revision must be a string, not 1234567: quote it",
    )


def test_recovery_point_time_that_is_not_an_iso_time(tmp_path: Path) -> None:
    assert error(tmp_path, entry="recoveryPoint: 2025-01-31T25:00:00Z") == (
        ENTRY_LINE,
        (
            "recoveryPoint '2025-01-31T25:00:00Z' is not an ISO 8601 time: "
            "write it like 2025-01-31T18:00:00+01:00"
        ),
    )


def test_recovery_point_time_without_an_offset(tmp_path: Path) -> None:
    assert error(tmp_path, entry="recoveryPoint: 2025-01-31T18:00:00") == (
        ENTRY_LINE,
        (
            "recoveryPoint '2025-01-31T18:00:00' has no UTC offset: add one (e.g. +01:00 or Z), "
            "so that it names the same instant wherever drctl runs"
        ),
    )


def test_recovery_point_keyword_in_the_wrong_case(tmp_path: Path) -> None:
    """A mistyped keyword would otherwise be taken for a point id no point has."""
    assert error(tmp_path, entry="recoveryPoint: LatestAppConsistent") == (
        ENTRY_LINE,
        "recoveryPoint 'LatestAppConsistent' must be written latestAppConsistent",
    )


def test_commit_approved_job_id_of_digits_must_be_quoted(tmp_path: Path) -> None:
    assert error(tmp_path, entry="commitApproved: 12345") == (
        ENTRY_LINE,
        "spec.vms[1].commitApproved must be a string, not 12345: quote it",
    )


def test_discard_lost_writes_names_one_failover(tmp_path: Path) -> None:
    assert error(tmp_path, spec="discardLostWrites: any") == (
        6,
        (
            "discardLostWrites must name the failover job whose lost writes may be discarded "
            "(drctl status shows its id), not 'any': writes are given up one failover at a time"
        ),
    )


def test_confirm_disable_replication_with_replication_on(tmp_path: Path) -> None:
    assert error(tmp_path, entry="confirmDisableReplication: true") == (
        ENTRY_LINE,
        (
            "confirmDisableReplication: true confirms replication: off, but VM 'web01' "
            "replicates ams->rtm: remove it"
        ),
    )


# --- warnings: valid, said, located ------------------------------------------


def test_validate_prints_warnings_on_stderr_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, with_keys(plan="allowDataLoss: true", entry="replication: off"))
    assert cli.main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out == f"{tmp_path}: valid (1 plans, 2 VMs)\n"
    assert out.err == (
        f"{tmp_path}/p.yaml:{POLICY_LINE}: warning: the next outage is pre-approved: drctl "
        "may lose unreplicated writes without asking; prefer allowDataLoss: {from: SITE, "
        "until: TIME} for one event\n"
        f"{tmp_path}/p.yaml:{ENTRY_LINE + 1}: warning: turning replication off removes the "
        "return path (on ASR it deletes the replicated item); add confirmDisableReplication: "
        "true beside it if that is meant\n"
    )


def test_standing_consent_on_a_vm_is_warned_at_its_line(tmp_path: Path) -> None:
    desired = load(tmp_path, entry="policy:\n  allowDataLoss: true")
    assert [(w.line, w.message) for w in desired.warnings] == [
        (ENTRY_LINE + 1, resolve.STANDING_CONSENT)
    ]


def test_replication_off_by_default_is_warned_once_at_the_default(tmp_path: Path) -> None:
    text = with_keys(entry="confirmDisableReplication: true").replace(
        "replication: ams->rtm}", "replication: off}"
    )
    write(tmp_path, text)
    desired = specdir.load_specs(tmp_path)
    assert [(w.line, w.message) for w in desired.warnings] == [
        (
            6,
            (
                "replication: off applies to 1 VM without confirmDisableReplication: true: "
                "turning replication off removes the return path (on ASR it deletes the "
                "replicated item); add confirmDisableReplication: true to each of those VM "
                "entries if that is meant"
            ),
        )
    ]
    assert [vm.confirm_disable_replication for vm in desired.vms()] == [False, True]


def test_a_key_in_a_comment_or_a_string_does_not_shift_warning_lines(tmp_path: Path) -> None:
    """Lines are found in the text; where it could mislead, the YAML tree decides."""
    text = with_keys(entry="policy: {allowDataLoss: true}").replace(
        "  vms:\n", "  # allowDataLoss: true was here\n  vms:\n"
    )
    text = text.replace("metadata: {name: finance}", "metadata: {name: 'allowDataLoss: x'}")
    write(tmp_path, text)
    assert [w.line for w in specdir.load_specs(tmp_path).warnings] == [ENTRY_LINE + 1]


def test_a_key_repeated_by_an_alias_is_located_where_the_alias_is(tmp_path: Path) -> None:
    """Each VM that takes the anchored policy is warned of at its own line, the anchor's said."""
    text = with_keys(plan="settleSeconds: 0").replace(
        "    - name: sql01\n",
        "    - name: sql01\n      policy: &standing {allowDataLoss: true}\n",
    )
    text = text.replace("      activeSite: ams\n", "      policy: *standing\n")
    write(tmp_path, text)
    warnings = specdir.load_specs(tmp_path).warnings
    assert [w.line for w in warnings] == [12, 14]
    assert warnings[1].message.endswith("(in the value aliased here from line 12)")


def test_warning_lines_follow_the_text_when_the_key_is_also_written_elsewhere(
    tmp_path: Path,
) -> None:
    text = with_keys(plan="allowDataLoss: false", entry="policy: {allowDataLoss: true}")
    text = text.replace(
        "    - name: sql01\n", "    - name: sql01\n      policy: {allowDataLoss: false}\n"
    )
    write(tmp_path, text)
    assert [w.line for w in specdir.load_specs(tmp_path).warnings] == [ENTRY_LINE + 2]


def test_warnings_are_matched_to_their_keys_in_text_order(tmp_path: Path) -> None:
    """The resolver finds the VM's warning before the default's, which the text has first."""
    text = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: off}
  vms:
    - name: sql01
    - name: web01
      replication: off
"""
    write(tmp_path, text)
    warnings = specdir.load_specs(tmp_path).warnings
    assert [w.line for w in warnings] == [6, 10]
    assert warnings[0].message.startswith("replication: off applies to 1 VM without")
    assert warnings[1].message == resolve.REPLICATION_OFF
