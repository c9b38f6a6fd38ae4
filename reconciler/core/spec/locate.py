"""The slow path of loading: from document paths to lines, and syntax errors explained.

yaml-rs keeps no line numbers, so only when a file is invalid does `spec`
parse it a second time with PyYAML's node API, here, to turn each problem's
document path into a line. Pure: it reads the texts it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
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
