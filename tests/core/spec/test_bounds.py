"""What a spec text cannot do to drctl: every bound is a clear refusal at a line of the file.

An alias bomb, a control character, a flipped bit, nesting past the parser's
depth, a huge or infinite duration, a list where a plan belongs: each is
`file:line: what to change`, one line of bounded length, the line inside
the file; never a traceback, a hang, or a silent acceptance.
"""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from reconciler.core import spec
from reconciler.errors import SpecError
from reconciler.gitops import specdir

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  policy: {allowDataLoss: false, maxParallel: 10, settleSeconds: 30}
  vms:
    - name: sql01
    - name: web01
"""

# The billion laughs of the issue: 9 levels of 9 aliases, 9^9 strings in 342 bytes.
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def lines_seen(directory: Path) -> list[str]:
    """The lines `drctl validate` prints for an invalid directory."""
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(directory)
    return [str(p) for p in caught.value.problems]


def one(directory: Path, text: str, name: str = "p.yaml") -> tuple[int, str]:
    """(line, message) of the one problem of a directory holding `text` as `name`."""
    (directory / name).write_text(text)
    found = lines_seen(directory)
    assert len(found) == 1, found
    file, line, message = found[0].split(":", 2)
    assert file == str(directory / name)
    assert 1 <= int(line) <= max(1, len(text.splitlines())), found[0]
    assert len(message) <= 400, found[0]
    return int(line), message.strip()


class _HungError(Exception):
    pass


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail a test that runs past 10 s (a hang, as the alias walk was: about a minute)."""

    def hung(_signum: int, _frame: FrameType | None) -> None:
        raise _HungError

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 10.0)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.usefixtures("deadline")
def test_a_billion_laughs_is_refused_at_once_at_the_alias_that_expands_it(tmp_path: Path) -> None:
    line, message = one(tmp_path, BILLION_LAUGHS)
    assert "aliases here expand the document past 1,000,000 nodes" in message
    assert line == 7  # g: 9 aliases of f (9^6 each): where the count passes a million


@pytest.mark.usefixtures("deadline")
def test_an_alias_bomb_beside_a_plan_with_a_duplicate_key_is_refused_in_time(
    tmp_path: Path,
) -> None:
    """The duplicate-key walk looks at each node once, not at each of its 9^9 paths."""
    text = BILLION_LAUGHS.replace("a: &a", "dup: 1\ndup: 2\na: &a")
    line, message = one(tmp_path, text)
    assert (line, message) == (2, ("duplicate key 'dup' (first at line 1): a key may appear "
                               "once per mapping, remove one"))  # fmt: skip


@pytest.mark.parametrize("char", ["\x07", "\x00", "\x1b", "\x7f", "\ufffe"])
def test_a_control_character_is_refused_with_its_line_and_column(tmp_path: Path, char: str) -> None:
    """yaml-rs took one in a plain scalar; PyYAML, locating another error, crashed on it."""
    text = PLAN.replace("web01", f"web{char}01").replace("  vms:", "  bogus: 1\n  vms:")
    line, message = one(tmp_path, text)
    assert line == 11
    assert message == (
        f"YAML does not allow the character U+{ord(char):04X} (column 16): remove it"
    )


def test_a_flipped_bit_that_breaks_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    data = bytearray(PLAN.encode())
    data[PLAN.index("sql01")] ^= 0x80
    (tmp_path / "p.yaml").write_bytes(bytes(data))
    assert lines_seen(tmp_path) == [
        (
            f"{tmp_path / 'p.yaml'}:9: the file is not UTF-8 text: byte 0xf3 at column 13; "
            "save it as UTF-8"
        )
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (PLAN + "  groups: [\n", 11),  # the parser stops past the last line
        ("x: [1,\n", 1),
        ("x: 'unterminated\n", 1),
        ('x: "unterminated\n', 1),  # PyYAML: at line 2, past the end
        ("a: 1\nb: [1,\n", 2),
        (PLAN.replace("sites: [ams, rtm]", "sites: [ams, rtm"), 6),
    ],
)
def test_a_syntax_error_names_a_line_the_file_has(tmp_path: Path, text: str, line: int) -> None:
    assert one(tmp_path, text)[0] == line


def test_lines_are_counted_by_newline_not_at_unicode_line_separators(tmp_path: Path) -> None:
    """PyYAML also breaks lines at U+2028 and NEL; editors and grep -n do not."""
    text = PLAN.replace("name: sql01", "name: sql01  # a \u2028 and a \u0085 in a comment").replace(
        "name: web01", "name: web01\n      bogus: 1"
    )
    line, message = one(tmp_path, text)
    assert line == 11
    assert message.startswith("unknown key 'bogus' in spec.vms[1]")


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("1e300", "must be 604800 (7 days) or less, not 1e+300"),
        (".inf", "must be a finite number of seconds, not inf"),
        (".nan", "must be a finite number of seconds, not nan"),
        ("-1", "must be 0 or more, not -1"),
        ("99999999999999999999", "must be 604800 (7 days) or less, not 99999999999999999999"),
        ("true", "must be a number, not True"),
    ],
)
@pytest.mark.parametrize("key", ["settleSeconds", "commitAfterSeconds"])
def test_every_duration_is_bounded(tmp_path: Path, key: str, value: str, said: str) -> None:
    text = PLAN.replace("settleSeconds: 30", f"{key}: {value}")
    assert one(tmp_path, text) == (7, f"spec.policy.{key} {said}")


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("10001", "must be 10000 or less, not 10001"),
        ("1e3", "must be a whole number, not 1000.0"),
        (".inf", "must be a whole number, not inf"),
        ("0", "must be 1 or more, not 0"),
    ],
)
def test_max_parallel_is_bounded(tmp_path: Path, value: str, said: str) -> None:
    text = PLAN.replace("maxParallel: 10", f"maxParallel: {value}")
    assert one(tmp_path, text) == (7, f"spec.policy.maxParallel {said}")


def test_a_top_level_list_is_one_document_never_several_plans(tmp_path: Path) -> None:
    """With a `---` in the file a list of two plans was taken as two documents."""
    item = "- " + PLAN.rstrip("\n").replace("\n", "\n  ") + "\n"
    text = "---\n" + item + item.replace("finance", "hr").replace("01", "02")
    line, message = one(tmp_path, text)
    assert line == 2
    assert message.endswith("not a list: one document holds one plan; separate plans with ---")


def test_documents_ended_by_three_dots_are_several_plans(tmp_path: Path) -> None:
    second = PLAN.replace("finance", "hr").replace("01", "02")
    (tmp_path / "p.yaml").write_text(PLAN + "...\n" + second)
    assert [p.name for p in specdir.load_specs(tmp_path).plans] == ["finance", "hr"]


def test_a_byte_order_mark_at_the_start_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("\ufeff" + PLAN, encoding="utf-8")
    assert [p.name for p in specdir.load_specs(tmp_path).plans] == ["finance"]


def test_a_key_holding_a_newline_is_said_on_one_line(tmp_path: Path) -> None:
    text = PLAN.replace("maxParallel: 10", '"max\\nParallel": 10')
    line, message = one(tmp_path, text)
    assert (line, message) == (
        7,
        "unknown key 'max\\nParallel' in spec.policy: remove it or fix its spelling",
    )


def test_input_is_quoted_only_shortened(tmp_path: Path) -> None:
    """A 200 KB value was echoed whole in its message."""
    huge = "x" * 200_000
    for text in (
        PLAN.replace("name: finance", f"name: [{huge}]"),
        PLAN.replace("vms:\n", f"{huge[:1000]}: 1\n  vms:\n"),  # a key: 1,024 at most
        PLAN.replace("name: web01", f"name: web01\n      activeSite: {huge}"),
    ):
        _line, message = one(tmp_path, text)
        assert len(message) < 300, message
        assert "xxx…xxx" in message or "xxx...xxx" in message


def test_a_problem_in_an_aliased_value_is_reported_where_the_alias_is(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        apiVersion: drctl/v1
        kind: RecoveryPlan
        metadata: {name: finance}
        spec:
          sites: [ams, rtm]
          defaults: {activeSite: ams}
          vms:
            - name: sql01
              policy: &standard
                allowDataLoss: maybe
            - name: web01
              policy: *standard
        """)
    (tmp_path / "p.yaml").write_text(text)
    assert lines_seen(tmp_path) == [
        (
            f"{tmp_path / 'p.yaml'}:10: spec.vms[0].policy.allowDataLoss must be true, false, "
            "{from: SITE, until: TIME} or {revision: SHA}, not 'maybe'"
        ),
        (
            f"{tmp_path / 'p.yaml'}:12: spec.vms[1].policy.allowDataLoss must be true, false, "
            "{from: SITE, until: TIME} or {revision: SHA}, not 'maybe' (in the value aliased "
            "here from line 10)"
        ),
    ]


def test_a_merge_key_says_yaml_1_2_has_none(tmp_path: Path) -> None:
    text = PLAN.replace("  sites:", "  x: &base {maxParallel: 3}\n  sites:").replace(
        "  policy: {", "  policy: {<<: *base, "
    )
    found = lines_seen(_write(tmp_path, text))
    assert found[1].endswith(
        ":8: merge keys (<<) are not YAML 1.2, which drctl reads: write the keys of "
        "spec.policy out, or set them in spec.defaults or spec.policy"
    )


def _write(directory: Path, text: str) -> Path:
    (directory / "p.yaml").write_text(text)
    return directory


def test_a_key_that_is_a_mapping_is_refused_at_its_line(tmp_path: Path) -> None:
    text = PLAN.replace("  vms:", "  ? {a: [1]}\n  : 1\n  vms:")
    assert one(tmp_path, text) == (
        8,
        "a mapping key must be a plain value (a name), not a list or a mapping",
    )


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 300 + "]" * 300,
        "{a: " * 300 + "1" + "}" * 300,
        "".join(f"\n{'  ' * (i + 2)}k{i}:" for i in range(1200)) + " 1",
    ],
    ids=["flow-list", "flow-mapping", "block"],
)
def test_nesting_deeper_than_the_parser_allows_is_refused(tmp_path: Path, nested: str) -> None:
    line, message = one(tmp_path, PLAN + "  deep: " + nested + "\n")
    assert message == "the YAML nests more than 255 levels deep: a spec needs fewer than ten"
    assert line >= 11


def test_a_text_larger_than_the_bound_is_refused_without_parsing() -> None:
    """The audit validates texts out of git, where no file size is checked first."""
    with pytest.raises(SpecError) as caught:
        spec.load_text("big.yaml", PLAN + "#" * (9 * 1024 * 1024))
    assert [str(p) for p in caught.value.problems] == [
        (
            "big.yaml:1: the file holds 9.0 MB of text; a spec file holds at most 8 MB: split it "
            "into several files"
        )
    ]


def test_problems_past_fifty_in_a_file_are_counted_not_listed(tmp_path: Path) -> None:
    """An alias repeated 50,000 times made a line for each repetition."""
    vms = "".join(f"    - {{name: vm{i:02d}, bogus: 1}}\n" for i in range(80))
    text = PLAN.split("    - name", maxsplit=1)[0] + vms
    found = lines_seen(_write(tmp_path, text))
    assert len(found) == 51
    assert found[49].endswith(
        ":58: unknown key 'bogus' in spec.vms[49]: remove it or fix its spelling"
    )
    assert found[50].endswith(
        ":59: and 30 more problems in this file from here on (the first 50 are listed)"
    )
