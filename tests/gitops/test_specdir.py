"""The spec directory: nothing that looks like a spec is skipped in silence, nothing outside is read.

A `.YAML` file, a directory named `*.yaml`, a broken or looping symbolic
link, a link that leaves the directory, a FIFO, a file past the size bound
or not UTF-8: each is a `file:line: ...` problem (a directory's without a
line, said as a directory), so the directory is invalid until it is fixed,
and a file name that would break `file:line` is printed quoted and escaped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.errors import SpecError
from reconciler.gitops import specdir

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  vms:
    - name: sql01
"""


def said(directory: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(directory)
    return [str(p) for p in caught.value.problems]


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "finance.yaml").write_text(PLAN)
    return tmp_path / "specs"


def test_a_missing_spec_directory_is_said_as_a_directory_without_a_line(tmp_path: Path) -> None:
    assert said(tmp_path / "nope") == [f"{tmp_path / 'nope'}: the spec directory does not exist"]
    (tmp_path / "file").write_text("x")
    assert said(tmp_path / "file") == [
        f"{tmp_path / 'file'}: the spec directory is a file, not a directory"
    ]


@pytest.mark.parametrize("suffix", [".YAML", ".Yml", ".yAmL"])
def test_a_spec_whose_suffix_is_not_lower_case_is_refused(specs: Path, suffix: str) -> None:
    """Renaming finance.yaml to finance.YAML dropped the plan, and its move, in silence."""
    (specs / "finance.yaml").rename(specs / f"finance{suffix}")
    assert said(specs) == [
        (
            f"{specs / f'finance{suffix}'}:1: a spec file's name ends in .yaml or .yml, in lower "
            f"case: rename it to finance{suffix.lower()}, or move it out of the spec directory"
        )
    ]


def test_a_directory_named_like_a_spec_is_reported(specs: Path) -> None:
    (specs / "hr.yaml").mkdir()
    assert said(specs) == [
        (
            f"{specs / 'hr.yaml'}: a directory named like a spec file: rename it (the files in it "
            "are read as those of any directory are)"
        )
    ]


def test_a_dangling_symlink_and_a_loop_are_reported(specs: Path) -> None:
    """Whatever the link's name: a dangling `plans` may have been a directory of specs."""
    (specs / "gone.yaml").symlink_to("moved.yaml")
    (specs / "plans").symlink_to("../plans")
    (specs / "a.yaml").symlink_to("b.yaml")
    (specs / "b.yaml").symlink_to("a.yaml")
    assert said(specs) == [
        f"{specs / 'a.yaml'}:1: a symbolic link loop (to b.yaml): fix or remove the link",
        f"{specs / 'b.yaml'}:1: a symbolic link loop (to a.yaml): fix or remove the link",
        (
            f"{specs / 'gone.yaml'}:1: a symbolic link to moved.yaml, which does not exist: fix or "
            "remove the link"
        ),
        (
            f"{specs / 'plans'}:1: a symbolic link to ../plans, which does not exist: fix or "
            "remove the link"
        ),
    ]


@pytest.mark.parametrize("target", ["../outside/hr.yaml", "OUTSIDE/hr.yaml", "../outside"])
def test_a_symlink_that_leaves_the_spec_directory_is_refused(specs: Path, target: str) -> None:
    outside = specs.parent / "outside"
    outside.mkdir()
    (outside / "hr.yaml").write_text(PLAN.replace("finance", "hr").replace("sql01", "hr01"))
    (specs / "hr.yaml").symlink_to(target.replace("OUTSIDE", str(outside)))
    real = outside / "hr.yaml" if target.endswith(".yaml") else outside
    assert said(specs) == [
        (
            f"{specs / 'hr.yaml'}:1: a symbolic link to {real}, outside the spec directory: drctl "
            "reads only what is in it (and so in the repository); copy the file in instead"
        )
    ]


def test_a_symlink_inside_the_spec_directory_is_read(specs: Path) -> None:
    (specs / "plans").mkdir()
    (specs / "plans" / "hr.yaml").write_text(PLAN.replace("finance", "hr").replace("sql", "hr"))
    (specs / "hr-link.yaml").symlink_to("plans/hr.yaml")
    (specs / "more").symlink_to("plans")  # read where it is, not twice
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(specs)
    assert [p.message for p in caught.value.problems] == [
        (
            f"plan 'hr' is also defined in {specs / 'hr-link.yaml'}: plan names must be unique, "
            "rename one"
        )
    ]


def test_a_fifo_named_like_a_spec_is_refused_without_blocking(specs: Path) -> None:
    os.mkfifo(specs / "pipe.yaml")
    assert said(specs) == [
        f"{specs / 'pipe.yaml'}:1: not a regular file (a FIFO, a socket or a device): remove it"
    ]


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(specs: Path) -> None:
    with (specs / "big.yaml").open("wb") as f:
        f.truncate(specdir.MAX_FILE_BYTES + 1)
    assert said(specs) == [
        (
            f"{specs / 'big.yaml'}:1: the file is 8.0 MB; a spec file is at most 8 MB: split it "
            "into several files"
        )
    ]


def test_a_utf16_file_says_to_save_it_as_utf8(specs: Path) -> None:
    (specs / "finance.yaml").write_text(PLAN, encoding="utf-16")
    assert said(specs) == [f"{specs / 'finance.yaml'}:1: the file is UTF-16 text: save it as UTF-8"]


def test_hidden_paths_and_other_files_are_skipped_as_documented(specs: Path) -> None:
    (specs / ".git").mkdir()
    (specs / ".git" / "x.yaml").write_text("garbage: [")
    (specs / ".draft.yaml").write_text("garbage: [")
    (specs / "README.md").write_text("# specs\n")
    (specs.parent / "README.md").write_text("# the repository\n")
    (specs / "TOP.md").symlink_to("../README.md")  # outside, but no spec's name: not ours
    assert [p.name for p in specdir.load_specs(specs).plans] == ["finance"]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (b"f\xff.yaml", '"SPECS/f\\xff.yaml"'),
        (b"new\nline.yaml", '"SPECS/new\\nline.yaml"'),
        (b"a:1:.yaml", '"SPECS/a:1:.yaml"'),
        (b'q"uote.yaml', '"SPECS/q\\"uote.yaml"'),
        (b"\x1b[31mred.yaml", '"SPECS/\\u001b[31mred.yaml"'),
        ("été.yaml".encode(), "SPECS/été.yaml"),
    ],
)
def test_an_odd_file_name_is_printed_quoted_and_escaped(
    specs: Path, name: bytes, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A newline or a colon in a name broke `file:line`; a non-UTF-8 byte crashed the print."""
    (specs / os.fsdecode(name)).write_bytes(b"x: [\n")
    assert cli.main(["validate", str(specs)]) == 2
    expected = shown.replace("SPECS", str(specs)) + ":1: YAML syntax error: did not find expected"
    expected += " node content"
    assert capsys.readouterr().err.splitlines() == [expected]
