"""The slow path of loading: from document paths to lines, and syntax errors explained.

yaml-rs keeps no line numbers, so only when a file is invalid does `spec`
parse it a second time with PyYAML's node API, here, to turn each problem's
document path into a line. A valid file with warnings is loaded on every
reconcile, so `locate_warnings` finds their lines in the text instead where
it can. Pure: it reads the texts it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.spec.resolve import Issue
from reconciler.core.spec.schema import DocPath
from reconciler.errors import SpecProblem


def syntax_issues(file: Path, text: str, exc: Exception) -> list[Issue]:
    """Explain a file yaml-rs refused, with the line where PyYAML sees the problem."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        nodes = list(yaml.compose_all(text, Loader=loader))
    except yaml.MarkedYAMLError as marked:
        mark = marked.problem_mark or marked.context_mark
        line = mark.line + 1 if mark else 1
        what = marked.problem or marked.context or "invalid YAML"
        return [Issue(file, 0, (), f"YAML syntax error: {what}", line=line)]
    duplicates = [
        Issue(
            file,
            0,
            (),
            f"duplicate key '{key.value}' (first at line "
            f"{first.start_mark.line + 1}): a key may appear once per mapping, remove one",
            line=key.start_mark.line + 1,
        )
        for node in nodes
        for key, first in _duplicate_keys(node)
    ]
    if duplicates:
        return duplicates
    found = re.search(r"line (\d+)", str(exc))
    line = int(found.group(1)) if found else 1
    first_line = str(exc).splitlines()[-1] if str(exc) else "invalid YAML"
    return [Issue(file, 0, (), f"YAML syntax error: {first_line}", line=line)]


def _duplicate_keys(node: yaml.Node) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    yield key, seen[key.value]
                else:
                    seen[key.value] = key
            yield from _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)


def locate_all(issues: list[Issue], texts: Mapping[Path, str]) -> list[SpecProblem]:
    trees: dict[Path, list[yaml.Node]] = {}
    problems = []
    for issue in issues:
        line = issue.line
        if line is None:
            if issue.file not in trees:
                trees[issue.file] = _compose(texts.get(issue.file, ""))
            line = _line_of(trees[issue.file], issue.doc, issue.path)
        problems.append(SpecProblem(str(issue.file), line, issue.message))
    return problems


def _compose(text: str) -> list[yaml.Node]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.compose_all(text, Loader=loader))
    except yaml.YAMLError:
        return []


def _line_of(docs: list[yaml.Node], doc: int, path: DocPath) -> int:
    """1-based line of the deepest node along `path` in document `doc`."""
    if doc >= len(docs):
        return 1
    node = docs[doc]
    line = node.start_mark.line + 1
    for step in path:
        child = _child(node, step)
        if child is None:
            break
        key_node, node = child
        line = (key_node or node).start_mark.line + 1
    return line


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return None, node.value[step]
    return None


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
