"""The slow path of loading: from document paths to lines.

yaml-rs keeps no line numbers, so only when a file is invalid does `spec`
parse it a second time with PyYAML's node API, here, to turn each problem's
document path into a line. A valid file with warnings is loaded on every
reconcile, so `locate_warnings` finds their lines in the text instead where
it can. `spec.parse` explains here, with the same node trees, why yaml-rs
refused a text. Pure: it reads the texts it is given.

A line is counted as editors and `grep -n` count it, by newline: PyYAML also
breaks lines at a lone CR, NEL and U+2028, so its own line numbers are not
used, only the character index of each node; and every line named is one the
file has. A node that an alias repeats is located where the alias is, and the
message says where its anchor is: a typo in an anchored policy is reported
at each place the policy is used.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.spec.resolve import Issue
from reconciler.core.spec.schema import DocPath
from reconciler.errors import SpecProblem

# Problems listed per file; past them one more line says how many were left out.
# An alias repeated 50,000 times would otherwise make 50,000 lines.
MAX_PROBLEMS_PER_FILE = 50
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# What may stand between a key (or the item before) and the alias that follows.
_BEFORE_ALIAS = re.compile(r"(?:\s|[:,?\[\-]|#[^\n]*)*\*")


class Lines:
    """The lines of a text as editors count them, found from a character index."""

    def __init__(self, text: str) -> None:
        self._breaks = [m.start() for m in re.finditer("\n", text)]
        self.count = max(1, len(self._breaks) + (0 if text.endswith("\n") or not text else 1))

    def at(self, index: int) -> int:
        """The 1-based line of the character at `index`, never past the last line."""
        return min(bisect.bisect_left(self._breaks, index) + 1, self.count)

    def clamp(self, line: int) -> int:
        """`line` (from another parser's count) as a line the text has."""
        return min(max(line, 1), self.count)


# Line breaks to PyYAML (YAML 1.1), characters to yaml-rs (1.2): a space of the
# same length keeps every index, and the two parsers agree on the structure.
_NOT_BREAKS = str.maketrans({"\x85": " ", "\u2028": " ", "\u2029": " "})


def compose_all(text: str) -> list[yaml.Node]:
    """The node tree of each document of `text`, as yaml-rs reads its lines.

    Raises `yaml.YAMLError` where PyYAML refuses the text.
    """
    return list(yaml.compose_all(text.translate(_NOT_BREAKS), Loader=_LOADER))


def compose(text: str) -> list[yaml.Node] | None:
    """The node tree of each document of `text`, or None if PyYAML refuses it too."""
    try:
        return compose_all(text)
    except (yaml.YAMLError, RecursionError):  # RecursionError: the pure-Python loader
        return None


def locate_all(issues: list[Issue], texts: Mapping[Path, str]) -> list[SpecProblem]:
    """Each issue as a problem with its line; at most MAX_PROBLEMS_PER_FILE per file."""
    trees: dict[Path, tuple[list[yaml.Node], Lines, str]] = {}
    by_file: dict[Path, list[SpecProblem]] = {}
    for issue in issues:
        if issue.file not in trees:
            text = texts.get(issue.file, "")
            trees[issue.file] = ([], Lines(text), text)
        nodes, lines, text = trees[issue.file]
        message = issue.message
        if issue.line is not None:
            line = lines.clamp(issue.line)
        else:
            if not nodes and text:
                nodes.extend(compose(text) or [])
            line, anchor = _line_of(nodes, issue.doc, issue.path, lines, text)
            if anchor is not None:
                message = f"{message} (in the value aliased here from line {anchor})"
        by_file.setdefault(issue.file, []).append(SpecProblem(str(issue.file), line, message))
    return [problem for found in by_file.values() for problem in _at_most(found)]


def _at_most(problems: list[SpecProblem]) -> list[SpecProblem]:
    if len(problems) <= MAX_PROBLEMS_PER_FILE:
        return problems
    problems = sorted(problems)
    shown, rest = problems[:MAX_PROBLEMS_PER_FILE], problems[MAX_PROBLEMS_PER_FILE:]
    more = SpecProblem(
        rest[0].file,
        rest[0].line,
        f"and {len(rest):,} more problems in this file from here on "
        f"(the first {MAX_PROBLEMS_PER_FILE} are listed)",
    )
    return [*shown, more]


def _line_of(
    docs: list[yaml.Node], doc: int, path: DocPath, lines: Lines, text: str
) -> tuple[int, int | None]:
    """The line of the deepest node along `path` in document `doc`.

    When the walk goes on inside a value an alias repeats, that is the
    alias's line, and the second value the line in the anchored value where
    the walk ended (a key whose value is an alias is on the alias's line).
    """
    if doc >= len(docs):
        return 1, None
    node = docs[doc]
    line = lines.at(node.start_mark.index)
    alias_line: int | None = None
    for step in path:
        found = _child(node, step)
        if found is None:
            break
        key, after, child = found
        if alias_line is not None:
            inside = True
        elif child.start_mark.index < after:
            # Written elsewhere: PyYAML gives an alias the anchored node itself,
            # and an anchor always comes before its aliases.
            alias_line, inside = _alias_line(text, after, lines), False
        line = lines.at((key or child).start_mark.index)
        node = child
    if alias_line is None:
        return line, None
    return (alias_line, line) if inside else (line, None)


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, int, yaml.Node] | None:
    """The key (None in a sequence) and node at `step` under `node`, and where it should start.

    A value is written after its key; an item after the item before it (or
    the sequence's start): a node that starts before that is an alias's.
    """
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return key, key.end_mark.index, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        before = node.value[step - 1].end_mark.index if step else node.start_mark.index
        return None, before, node.value[step]
    return None


def _alias_line(text: str, after: int, lines: Lines) -> int:
    """The line of the alias written after index `after` (a key's end, the item before)."""
    alias = _BEFORE_ALIAS.match(text, after)
    return lines.at(alias.end() - 1 if alias else after)


def duplicate_keys(docs: Sequence[yaml.Node]) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """Each (key, first key) of a mapping that holds a key twice, in document order.

    Each node is looked at once, however many aliases repeat it: a 486-byte
    alias bomb is a few dozen nodes, and 9^9 paths through them.
    """
    seen: set[int] = set()
    stack = list(reversed(docs))
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[Any, yaml.Node] = {}
            for key, _value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in keys:
                        yield key, keys[key.value]
                    else:
                        keys[key.value] = key
            stack.extend(value for _key, value in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))


def expansion_line(docs: Sequence[yaml.Node], limit: int, lines: Lines, text: str) -> int:
    """The line where the documents, aliases expanded, grow past `limit` nodes.

    Each node's expanded size is counted once (so this is linear in the
    nodes, not in their expansion); then the walk goes down into the child
    where the running count crosses `limit`, to the first alias on the way.
    """
    sizes = _expanded_sizes(docs)
    budget = limit
    line = 1
    children: list[tuple[int, yaml.Node]] = [(0, d) for d in docs]
    while children:
        for after, child in children:
            size = sizes[id(child)]
            if size <= budget:
                budget -= size
                continue
            if child.start_mark.index < after:  # an alias: here it is
                return _alias_line(text, after, lines)
            line = lines.at(child.start_mark.index)
            budget -= 1
            children = list(_children_after(child))
            break
        else:
            break
    return line


def _children_after(node: yaml.Node) -> Iterator[tuple[int, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key.end_mark.index, value
    elif isinstance(node, yaml.SequenceNode):
        before = node.start_mark.index
        for item in node.value:
            yield before, item
            before = item.end_mark.index


def _expanded_sizes(docs: Sequence[yaml.Node]) -> dict[int, int]:
    """Each node's size with aliases expanded, by id, computed bottom-up once per node."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(d, False) for d in docs]
    while stack:
        node, ready = stack.pop()
        if id(node) in sizes:
            continue
        kids = _kids(node)
        if ready:
            sizes[id(node)] = 1 + sum(sizes[id(k)] for k in kids)
            continue
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes


def _kids(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def locate_warnings(issues: list[Issue], text: str, docs: Sequence[Any]) -> list[SpecProblem]:
    """The warnings of one valid file (`text`, parsed as `docs`), each with its line.

    Composing a 100k-VM file with PyYAML takes about a second: too dear on
    every reconcile for one line. So the n-th `key:` in the text is taken to
    be the n-th `key` of the parsed documents, in document order: when the
    key is written only where a warning is, the warnings themselves are
    those keys; otherwise every key of that name in the documents is
    counted. Where the counts differ (the key inside a string, an alias
    repeating a mapping), the node tree decides, as for errors.
    """
    lines: dict[tuple[int, DocPath], int] = {}
    for key in {str(issue.path[-1]) for issue in issues}:
        found = _key_lines(text, key)
        warned = sorted(
            {(i.doc, i.path) for i in issues if i.path[-1] == key},
            key=lambda where: _document_order(docs, *where),
        )
        if len(found) == len(warned):
            paths = warned
        else:
            paths = [
                (d, path) for d, doc in enumerate(docs) for path in _key_paths(doc, key, (), [])
            ]
        if len(found) != len(paths):
            return locate_all(issues, {issues[0].file: text})
        lines.update(zip(paths, found, strict=True))
    return [SpecProblem(str(i.file), lines[(i.doc, i.path)], i.message) for i in issues]


def _document_order(docs: Sequence[Any], doc: int, path: DocPath) -> tuple[int, ...]:
    """Where `path` comes in document `doc`, as positions that sort in text order."""
    order = [doc]
    node = docs[doc]
    for step in path:
        if isinstance(node, dict):
            order.append(list(node).index(step))
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int):
            order.append(step)
            node = node[step]
    return tuple(order)


def _key_lines(text: str, key: str) -> list[int]:
    """The 1-based line of each `key:` written as a mapping key, comments left out."""
    # The pattern starts with the key itself, so `re` skips ahead to each
    # occurrence; what comes before it is checked by hand.
    pattern = re.compile(rf"""{re.escape(key)}["']?[ \t]*:(?=\s|$)""")
    lines: list[int] = []
    line, at = 1, 0
    for match in pattern.finditer(text):
        start = match.start()
        if start and text[start - 1] in "\"'":
            start -= 1
        if start and not (text[start - 1].isspace() or text[start - 1] in "{,?"):
            continue  # the end of a longer word: `xallowDataLoss:`
        line += text.count("\n", at, start)
        at = start
        before = text[text.rfind("\n", 0, start) + 1 : start]
        if "#" in before and re.search(r"(^|\s)#", before):
            continue  # in a comment
        lines.append(line)
    return lines


def _key_paths(node: Any, key: str, path: DocPath, found: list[DocPath]) -> list[DocPath]:
    """Append the path of every mapping key equal to `key` under `node`, in document order."""
    # A path is built only for a match or a container: most of a large plan
    # is name-only entries, which hold neither.
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                found.append((*path, name))
            if isinstance(value, dict | list):
                _key_paths(value, key, (*path, name), found)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, dict | list):
                _key_paths(item, key, (*path, i), found)
    return found
