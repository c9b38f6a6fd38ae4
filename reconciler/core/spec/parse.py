"""The first parse of a spec file's text, bounded; and, when it fails, why, with a line.

`documents(file, text, issues)` returns the documents of `text` as yaml-rs
parses them (Rust, YAML 1.2, duplicate keys refused), or appends to `issues`
why it cannot. Called by `spec` for every file on every reconcile, so what
it checks on a valid text costs a few milliseconds on 2 MB. Pure.

Each bound is a clear refusal, never a hang or a traceback:
- a text of more than MAX_CHARS characters (`gitops.specdir` refuses a
  larger file before reading it; the audit's texts come from git);
- a character YAML does not allow (a control character, a lone surrogate):
  PyYAML refuses them and yaml-rs does not, so they are refused here first;
- aliases that expand past MAX_ALIAS_NODES nodes (yaml-rs counts; a
  billion-laughs document is refused in a fraction of a second);
- nesting deeper than MAX_DEPTH: yaml-rs refuses deeper flow collections
  itself; block ones are measured when a line starts that far in.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
import yaml_rs

from reconciler.core.spec import locate
from reconciler.core.spec.resolve import Issue

MAX_CHARS = 8 * 1024 * 1024
MAX_ALIAS_NODES = 1_000_000
MAX_DEPTH = 255  # yaml-rs refuses a flow collection nested deeper
_LIMITS = yaml_rs.AliasLimits(max_total_replayed_events=MAX_ALIAS_NODES)
# What YAML 1.2 allows in a stream (c-printable), as PyYAML checks it.
_NOT_YAML = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# A block collection nested MAX_DEPTH deep starts a line at least that far in.
# (A newline in the pattern, not `^` with MULTILINE: six times faster.)
_DEEP = rf"[ ?:-]{{{MAX_DEPTH}}}"
_DEEP_FIRST_LINE = re.compile(_DEEP)
_DEEP_LINE = re.compile(rf"\n{_DEEP}")
# yaml-rs returns a list both for several documents and for one document that
# is a list: a last document of its own, always there, tells them apart.
# (After the text's own last newline: a `|+` scalar keeps every one it ends with.)
_LAST_DOCUMENT = "--- drctl-end-of-text\n"
_BOM = "\ufeff"


def documents(file: Path, text: str, issues: list[Issue]) -> list[Any] | None:
    """The documents of `text`, or None with why not appended to `issues`."""
    text = text.removeprefix(_BOM)
    if len(text) > MAX_CHARS:
        issues.append(Issue(file, 0, (), _too_large(len(text)), line=1))
        return None
    if (bad := _NOT_YAML.search(text)) is not None:
        issues.append(_not_allowed(file, text, bad.start()))
        return None
    try:
        ended = text if text.endswith("\n") or not text else text + "\n"
        parsed = yaml_rs.loads(ended + _LAST_DOCUMENT, parse_datetime=False, alias_limits=_LIMITS)
    except yaml_rs.YAMLDecodeError as exc:
        issues.extend(syntax_issues(file, text, exc))
        return None
    except (TypeError, ValueError, OverflowError):  # a key yaml-rs cannot make a Python key of
        issues.append(Issue(file, 0, (), _COMPLEX_KEY, line=_complex_key_line(text)))
        return None
    docs = parsed[:-1] if isinstance(parsed, list) else []
    if _deep_line(text) is not None and (line := _too_deep(docs, text)) is not None:
        issues.append(Issue(file, 0, (), _nested(), line=line))
        return None
    return docs


def _too_large(chars: int) -> str:
    return (
        f"the file holds {chars / 1024 / 1024:.1f} MB of text; a spec file holds at most "
        f"{MAX_CHARS // 1024 // 1024} MB: split it into several files"
    )


def _not_allowed(file: Path, text: str, index: int) -> Issue:
    char = text[index]
    code = ord(char)
    column = index - text.rfind("\n", 0, index)
    what = (
        f"\\x{code - 0xDC00:02x} (a byte that is not UTF-8)"
        if 0xDC80 <= code <= 0xDCFF
        else (f"U+{code:04X}")
    )
    return Issue(
        file,
        0,
        (),
        f"YAML does not allow the character {what} (column {column}): remove it",
        line=locate.Lines(text).at(index),
    )


_COMPLEX_KEY = "a mapping key must be a plain value (a name), not a list or a mapping"


def _complex_key_line(text: str) -> int:
    lines = locate.Lines(text)
    stack = list(reversed(locate.compose(text) or []))
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key, _value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    return lines.at(key.start_mark.index)
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
    return 1


def _nested() -> str:
    return f"the YAML nests more than {MAX_DEPTH} levels deep: a spec needs fewer than ten"


def _too_deep(docs: list[Any], text: str) -> int | None:
    """The line of a collection nested past MAX_DEPTH, if there is one (None if not)."""
    stack: list[tuple[Any, int]] = [(d, 1) for d in docs]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return locate.Lines(text).at(_deep_line(text) or 0)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return None


def _deep_line(text: str) -> int | None:
    """The index where the first line that starts MAX_DEPTH deep begins, if there is one."""
    if _DEEP_FIRST_LINE.match(text):
        return 0
    found = _DEEP_LINE.search(text)
    return found.start() + 1 if found else None


def syntax_issues(file: Path, text: str, exc: Exception) -> list[Issue]:
    """Explain a text yaml-rs refused, with the line where the problem is."""
    lines = locate.Lines(text)
    said = str(exc)
    if "alias replay limit" in said:
        nodes = locate.compose(text) or []
        line = locate.expansion_line(nodes, MAX_ALIAS_NODES, lines, text)
        return [
            Issue(
                file,
                0,
                (),
                f"the aliases here expand the document past {MAX_ALIAS_NODES:,} nodes (an "
                "alias bomb?): write the values out, or use fewer aliases",
                line=line,
            )
        ]
    if "recursion limit exceeded" in said:
        return [Issue(file, 0, (), _nested(), line=lines.clamp(_line_in(said)))]
    try:
        nodes = locate.compose_all(text)
    except yaml.MarkedYAMLError as marked:
        mark = marked.problem_mark or marked.context_mark
        what = marked.problem or marked.context or "invalid YAML"
        line = lines.at(mark.index) if mark else 1
        return [Issue(file, 0, (), f"YAML syntax error: {what}", line=line)]
    except (yaml.YAMLError, RecursionError):
        nodes = []  # said by yaml-rs below
    duplicates = [
        Issue(
            file,
            0,
            (),
            f"duplicate key '{key.value}' (first at line {lines.at(first.start_mark.index)}): "
            "a key may appear once per mapping, remove one",
            line=lines.at(key.start_mark.index),
        )
        for key, first in locate.duplicate_keys(nodes)
    ]
    if duplicates:
        return duplicates
    last = said.strip().splitlines()[-1].strip() if said.strip() else ""
    if not last or last.startswith(("|", "^")):
        last = "invalid YAML"
    return [Issue(file, 0, (), f"YAML syntax error: {last}", line=lines.clamp(_line_in(said)))]


def _line_in(said: str) -> int:
    found = re.search(r"line (\d+)", said)
    return int(found.group(1)) if found else 1
