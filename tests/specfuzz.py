"""A seeded fuzzer of spec directories, and the checks every answer of drctl must pass.

`generate(rng)` makes one `Case`: a spec directory built from the example
specs with one kind of damage (a key deleted, duplicated or renamed, a wrong
type, a huge value, unicode and control characters, an alias bomb, a BOM,
non-UTF-8 bytes, deep nesting, a symlink loop, a file name with a newline...),
or a few at once. `run_case` builds it under a root directory and runs
`drctl validate` (or `drctl plan`) in this process, with stdout and stderr
encoded as a UTF-8 terminal would; `violations` lists what breaks the
contract: a traceback, an exit code out of the contract, a message that is
not `file:line: ...` with the line inside the file (or the directory, said as
such), a message over `MAX_MESSAGE` characters, a case over `MAX_SECONDS`.

Used by tests/test_spec_fuzz.py (a few thousand cases per run) and
bench/spec_fuzz.py (a longer run, with figures).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
MAX_MESSAGE = 500
MAX_SECONDS = 10.0

_FABRIC = """\
apiVersion: drctl/v1
kind: Fabric
metadata: {name: lab}
spec:
  simulator: {}
  sites: {ams: {}, rtm: {}}
"""

_SAFETY = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: payroll}
spec:
  fabric: lab
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  commitApproved: any
  policy:
    allowDataLoss: {from: ams, until: "2031-01-31T18:00:00+01:00"}
    maxParallel: 4
    settleSeconds: 30
    commit: manual
    commitAfterSeconds: 120
    selfHeal: false
    unorderedFailover: false
    reprotectAfterUnplanned: wait
  groups:
    - {name: db, vms: [pay-db]}
    - name: app
      after: [db]
      vms: [pay-app]
  vms:
    - name: pay-db
      recoveryPoint: latestAppConsistent
      policy: {allowDataLoss: {revision: 0123abc}}
    - name: pay-app
      activeSite: rtm
      replication: rtm->ams
      discardLostWrites: ams/job-17
    - name: pay-scratch
      replication: off
      confirmDisableReplication: true
"""


def seeds() -> dict[str, str]:
    """The texts mutated: the repository's example specs, and a few written here."""
    found = {p.name: p.read_text() for p in sorted((REPO / "specs").glob("*.yaml"))}
    found["inventory.yaml"] = (REPO / "examples" / "inventory.yaml").read_text()
    found["fabric.yaml"] = _FABRIC
    found["payroll.yaml"] = _SAFETY
    return found


# What a directory entry is: a file's bytes, a symlink's target, a directory, a FIFO.
@dataclass(frozen=True)
class Entry:
    path: bytes  # relative to the spec directory, '/'-separated
    data: bytes | None = None
    link: bytes | None = None
    kind: str = "file"  # file | link | dir | fifo | sparse (data, then holes up to size)
    size: int = 0


@dataclass
class Case:
    kind: str
    entries: list[Entry] = field(default_factory=list)
    specs: str = "dir"  # dir | missing | file | odd-name
    command: str = "validate"

    def describe(self) -> str:
        shown = ", ".join(f"{e.kind}:{e.path!r}" for e in self.entries)
        return f"{self.kind} ({self.specs}; {shown})"


# ---- text mutations -----------------------------------------------------------

_KEY = re.compile(r"(?<![\w-])([A-Za-z][A-Za-z0-9_]*):(?=[ \t]|$)", re.MULTILINE)
_VALUE = re.compile(r"[ \t]*([^,}\]\n#]*)")
WRONG_VALUES = [
    "1", "-1", "0", "[a, b]", "{a: 1}", "true", "null", "''", '""', "1e300", "-1e300",
    ".inf", "-.inf", ".nan", "0x7fffffff", "99999999999999999999999", "1e-300", "-0.0",
    "2025-01-01", "*nope", "!!binary aGVsbG8=", "[[[]]]", "{}", "[]", "~", "|\n  text",
    "'ams->ams'", "rtm->rtm", "ams -> nowhere", "x" * 300, "\"\\x07\"", "\"\\u2028\"",
    "\"\\0\"", "'0001-01-01T00:00:00+01:00'", "'9999-12-31T23:59:59-14:00'",
    "2031-13-45T99:99:99Z", "'2031-01-31T18:00:00'", "manual", "MANUAL", "latest",
]  # fmt: skip
HUGE = [
    "1e300", ".inf", "-.inf", ".nan", "1e309", str(10**30), str(-(10**30)), "-1",
    "1e-320", "0.0000001", str(2**63), str(2**64 + 1), "0b" + "1" * 200,
]  # fmt: skip
CHARS = [
    "\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f",
    "\u00a0", "\u200b", "\u2028", "\u2029", "\ufeff", "\ufffe", "\uffff", "é", "ß",
    "\u0301", "\U0001f642", "\u202e", "\t", "\r", ":", "#", "&", "*", "!", "|", ">",
    "'", '"', "\\", "{", "}", "[", "]", ",", "%", "@", "`", "?", "-", "---", "...",
]  # fmt: skip


def _keys(text: str) -> list[re.Match[str]]:
    return list(_KEY.finditer(text))


def _pick(
    rng: random.Random, text: str, names: set[str] | None = None
) -> tuple[re.Match[str], int] | None:
    """A key of `text` (one of `names` if there are any) and where its value ends."""
    keys = _keys(text)
    if names is not None:
        keys = [k for k in keys if k.group(1) in names] or keys
    if not keys:
        return None
    key = rng.choice(keys)
    value = _VALUE.match(text, key.end())
    return key, value.end() if value else key.end()


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def delete_key(rng: random.Random, text: str) -> str:
    picked = _pick(rng, text)
    if picked is None:
        return text
    key, end = picked
    if rng.random() < 0.5:  # the whole line
        start = text.rfind("\n", 0, key.start()) + 1
        line_end = text.find("\n", key.end())
        return text[:start] + (text[line_end + 1 :] if line_end >= 0 else "")
    return text[: key.start()] + text[end:].lstrip(", ")


def duplicate_key(rng: random.Random, text: str) -> str:
    picked = _pick(rng, text)
    if picked is None:
        return text
    key, end = picked
    line_start = text.rfind("\n", 0, key.start()) + 1
    inline = text[line_start : key.start()].strip(" -")
    if inline:  # inside a flow mapping: `{a: 1, a: 1}`
        return text[:end] + ", " + text[key.start() : end] + text[end:]
    line_end = text.find("\n", key.end())
    line = text[line_start : line_end + 1 if line_end >= 0 else len(text)]
    indent = line[: len(line) - len(line.lstrip(" -"))].replace("-", " ")
    return (
        text[: line_start + len(line)] + indent + line.lstrip(" -") + text[line_start + len(line) :]
    )


def rename_key(rng: random.Random, text: str) -> str:
    picked = _pick(rng, text)
    if picked is None:
        return text
    key = picked[0]
    name = key.group(1)
    new = rng.choice(
        [
            name.upper(),
            name.lower(),
            name[:-1],
            name + "s",
            name[::-1],
            "x" + name,
            name + rng.choice(CHARS),
            rng.choice(CHARS) + name,
            "k" * rng.choice([1, 100, 10_000]),
            '"' + name + "\\n" + name + '"',
            '"a\\x00b"',
            "<<",
            "? " + name,
            "1",
            "null",
            "true",
        ]
    )
    return text[: key.start()] + new + text[key.end() - 1 :]


def wrong_type(rng: random.Random, text: str) -> str:
    picked = _pick(rng, text)
    if picked is None:
        return text
    key, end = picked
    replacement = rng.choice(WRONG_VALUES)
    if "\n" in replacement and text[text.rfind("\n", 0, key.start()) + 1 : key.start()].strip():
        replacement = replacement.replace("\n", " ")
    return text[: key.end()] + " " + replacement + text[end:]


# Values that mean something to one key or another: a valid one in the wrong
# place is as likely to find a crash as garbage is.
MEANINGFUL = [
    "ams", "rtm", "AMS", "ams->rtm", "rtm->ams", "ams->ams", "off", "false", "any", "lab",
    "embedded", "latest", "latestAppConsistent", "0123abc", "0" * 40, "g" * 40, "ams/job-1",
    "'2031-01-31T18:00:00+01:00'", "'2000-01-01T00:00:00Z'", "'2031-01-31'", "auto", "wait",
    "manual", "drctl/v1", "drctl/v2", "RecoveryPlan", "Fabric", "[ams, rtm]", "[ams, ams]",
    "[ams, rtm, x]", "[]", "{from: ams}", "{until: '2031-01-31T18:00:00+01:00'}",
    "{revision: 0123abc, from: ams}", "{ams: {}, rtm: {}}", "{simulator: {}}", "[sql01]",
    "[db]", "[web, db]", "{name: x}", "[{name: sql01}, {name: sql01}]",
]  # fmt: skip
KEYED = {
    "until", "revision", "from", "recoveryPoint", "commitApproved", "discardLostWrites",
    "replication", "activeSite", "fabric", "name", "after", "vms", "sites", "commit",
    "reprotectAfterUnplanned", "apiVersion", "kind", "allowDataLoss", "policy", "defaults",
    "groups", "spec", "metadata", "simulator", "confirmDisableReplication", "selfHeal",
}  # fmt: skip


def key_value(rng: random.Random, text: str) -> str:
    picked = _pick(rng, text, KEYED)
    if picked is None:
        return text
    key, end = picked
    return text[: key.end()] + " " + rng.choice(MEANINGFUL + WRONG_VALUES[:20]) + text[end:]


NUMERIC = {"settleSeconds", "commitAfterSeconds", "maxParallel"}


def huge_value(rng: random.Random, text: str) -> str:
    picked = _pick(rng, text, NUMERIC)
    if picked is None:
        return text
    key, end = picked
    if rng.random() < 0.75 and key.group(1) in NUMERIC:
        big = rng.choice(HUGE)
    else:
        big = rng.choice(["x", "é", "🙂", "a b", "\\x00"]) * rng.choice([300, 5_000, 200_000])
        big = f'"{big}"' if "\\" in big else big
    return text[: key.end()] + " " + big + text[end:]


def insert_char(rng: random.Random, text: str) -> str:
    at = rng.randrange(len(text) + 1)
    if rng.random() < 0.6:  # in a value: after a key
        keys = _keys(text)
        if keys:
            key = rng.choice(keys)
            at = min(len(text), key.end() + 1 + rng.randrange(4))
    chars = "".join(rng.choice(CHARS) for _ in range(rng.choice([1, 1, 2, 5])))
    return text[:at] + chars + text[at:]


def long_name(rng: random.Random, text: str) -> str:
    length = rng.choice([64, 255, 256, 4096, 100_000])
    name = "".join(rng.choice("abcdefghij-._0123456789é") for _ in range(min(length, 64)))
    name = (name * (length // len(name) + 1))[:length]
    target = rng.choice(["name: ", "activeSite: ", "vms: [", "fabric: ", "after: ["])
    return text.replace(target, target + name, 1)


def anchor_alias(rng: random.Random, text: str) -> str:
    keys = _keys(text)
    if len(keys) < 2:
        return text
    first, second = sorted(rng.sample(keys, 2), key=lambda m: m.start())
    name = rng.choice(["a", "x", "policy", "é"])
    value = _VALUE.match(text, second.end())
    end = value.end() if value else second.end()
    alias = rng.choice([f"*{name}", f"*{name}", "*nope", f"&{name} *{name}"])
    text = text[: second.end()] + " " + alias + text[end:]
    return text[: first.end()] + f" &{name}" + text[first.end() :]


def merge_key(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    mappings = [i for i, line in enumerate(lines) if re.match(r"^\s*[\w-]+:\s*$", line)]
    if not mappings:
        return anchor_alias(rng, text)
    i = rng.choice(mappings)
    indent = len(lines[i]) - len(lines[i].lstrip()) + 2
    anchor = rng.choice(["{allowDataLoss: true}", "{maxParallel: 3}", "{bogus: 1}", "[1, 2]", "x"])
    head = f"x-base: &base {anchor}\n"
    merge = " " * indent + rng.choice(["<<: *base\n", "<<: [*base, *base]\n", "<<: *nope\n"])
    return head + "".join(lines[: i + 1]) + merge + "".join(lines[i + 1 :])


def alias_bomb(rng: random.Random, text: str, levels: int | None = None) -> str:
    levels = levels or rng.choice([2, 4, 5, 6, 9, 9])
    width = rng.choice([9, 10])
    bomb = "a0: &a0 [" + ", ".join(['"lol"'] * width) + "]\n"
    for i in range(1, levels + 1):
        bomb += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]\n"
    where = rng.random()
    if where < 0.4:
        return bomb
    if where < 0.7:
        return text + "---\n" + bomb
    return text.replace("spec:\n", bomb.replace("\n", "\n  ").join(["spec:\n  ", "\n"]), 1)


def tabs(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    if not lines:
        return "\t"
    i = rng.randrange(len(lines))
    line = lines[i]
    stripped = line.lstrip(" ")
    lines[i] = (
        rng.choice(["\t", "\t\t", " \t"]) + stripped
        if rng.random() < 0.7
        else line.replace(": ", ":\t", 1)
    )
    return "".join(lines)


def bom(rng: random.Random, text: str) -> str:
    choice = rng.random()
    if choice < 0.5:
        return "\ufeff" + text
    if choice < 0.7:
        return "\ufeff\ufeff" + text
    lines = _lines(text)
    i = rng.randrange(len(lines) + 1)
    return "".join([*lines[:i], "\ufeff", *lines[i:]])


def line_endings(rng: random.Random, text: str) -> str:
    ending = rng.choice(["\r\n", "\r", "\n\r", "\u2028", "\x85", "\x0c\n"])
    if rng.random() < 0.5:
        return text.replace("\n", ending)
    lines = _lines(text)
    i = rng.randrange(len(lines)) if lines else 0
    return "".join(lines[:i]) + ending + "".join(lines[i:])


def deep_nesting(rng: random.Random, text: str) -> str:
    depth = rng.choice([10, 64, 100, 200, 255, 256, 257, 300, 999, 1000, 1001, 5000, 100_000])
    style = rng.random()
    if style < 0.4:
        nested = "[" * depth + "]" * depth
    elif style < 0.7:
        nested = "{a: " * depth + "1" + "}" * depth
    else:  # block mappings: quadratic in text size, so kept shallower
        depth = min(depth, 1200)
        nested = "".join(f"\n{'  ' * (i + 2)}k{i}:" for i in range(depth)) + " 1"
    picked = _pick(rng, text)
    if picked is None or rng.random() < 0.3:
        return text + "deep: " + nested + "\n"
    key, end = picked
    if nested.startswith("\n") and text[text.rfind("\n", 0, key.start()) + 1 : key.start()].strip():
        nested = "[" * depth + "]" * depth
    return text[: key.end()] + " " + nested + text[end:]


def multi_document(rng: random.Random, text: str, other: str) -> str:
    separator = rng.choice(["---\n", "\n---\n", "...\n---\n", "...\n", "--- \n", "---\n---\n"])
    return rng.choice(
        [text + separator + other, separator + text, text + separator, "---\n" + text + "...\n"]
    )


def top_level_list(rng: random.Random, text: str, other: str) -> str:
    indented = "- " + text.rstrip("\n").replace("\n", "\n  ") + "\n"
    both = indented + "- " + other.rstrip("\n").replace("\n", "\n  ") + "\n"
    return rng.choice([indented, both, "---\n" + both, "---\n" + indented, "[]\n", "- a\n- b\n"])


def truncate(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text) + 1)]


def duplicate_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    if not lines:
        return text
    i = rng.randrange(len(lines))
    j = min(len(lines), i + rng.choice([1, 1, 2, 5]))
    if rng.random() < 0.5:
        return "".join(lines[:j] + lines[i:j] + lines[j:])
    return "".join(lines[:i] + lines[j:])


TextMutation = Callable[[random.Random, str], str]
TEXT_MUTATIONS: dict[str, TextMutation] = {
    "delete-key": delete_key,
    "duplicate-key": duplicate_key,
    "rename-key": rename_key,
    "wrong-type": wrong_type,
    "key-value": key_value,
    "huge-value": huge_value,
    "control-char": insert_char,
    "long-name": long_name,
    "anchor-alias": anchor_alias,
    "merge-key": merge_key,
    "alias-bomb": alias_bomb,
    "tab": tabs,
    "bom": bom,
    "line-endings": line_endings,
    "deep-nesting": deep_nesting,
    "truncate": truncate,
    "lines": duplicate_lines,
}

# ---- byte mutations -----------------------------------------------------------


def non_utf8(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    bad = rng.choice(
        [b"\xff", b"\xfe", b"\xc3", b"\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf"]
    )
    return data[:at] + bad + data[at:]


def bit_flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return b"\x80"
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def binary(rng: random.Random, _data: bytes) -> bytes:
    choice = rng.random()
    if choice < 0.3:
        return rng.randbytes(rng.choice([1, 16, 512, 4096]))
    if choice < 0.5:
        return b"\x89PNG\r\n\x1a\n" + rng.randbytes(200)
    if choice < 0.7:
        return "\ufeffkind: RecoveryPlan\n".encode("utf-16")
    if choice < 0.85:
        return b"\x00" * rng.choice([1, 100, 10_000])
    return b"\x1f\x8b\x08" + rng.randbytes(100)


def empty(rng: random.Random, _data: bytes) -> bytes:
    return rng.choice(
        [b"", b"\n", b"---\n", b"# a comment\n", b"...\n", b"~\n", b"   ", b"---\n...\n"]
    )


ByteMutation = Callable[[random.Random, bytes], bytes]
BYTE_MUTATIONS: dict[str, ByteMutation] = {
    "non-utf8": non_utf8,
    "bit-flip": bit_flip,
    "binary": binary,
    "empty-file": empty,
}

# ---- directory mutations ------------------------------------------------------

ODD_NAMES = [
    b"f\xff.yaml", b"new\nline.yaml", b"a:1:.yaml", b"sp ace.yaml", b'"q".yaml',
    b"back\\slash.yaml", b"tab\t.yaml", b"\x1b[31mred.yaml", "é.yaml".encode(),
    b"x" * 250 + b".yaml", b"-.yaml", b"sub/deeper/f.yaml", b"dir\xfe/f.yaml",
    b" lead.yaml", b"trail .yaml", b"cr\r.yaml", "\u2028.yaml".encode(), b"%s.yaml",
    "\u202eevil.yaml".encode(), b"a:2: fake.yaml",
]  # fmt: skip


def odd_file_name(rng: random.Random, case: Case, text: str) -> None:
    name = rng.choice(ODD_NAMES)
    data = text.encode()
    if rng.random() < 0.8:  # an error, so that the name is printed
        data = rng.choice(list(TEXT_MUTATIONS.values()))(rng, text).encode("utf-8", "surrogatepass")
    case.entries.append(Entry(name, data))


def case_suffix(rng: random.Random, case: Case, text: str) -> None:
    suffix = rng.choice([b".YAML", b".Yml", b".yAmL", b".YML", b".Yaml"])
    case.entries.append(Entry(b"moved" + suffix, text.encode()))


def dir_named_yaml(rng: random.Random, case: Case, text: str) -> None:
    name = rng.choice([b"d.yaml", b"d.yml", b"nested/d.yaml", b"d.YAML"])
    case.entries.append(Entry(name, kind="dir"))
    if rng.random() < 0.5:
        case.entries.append(Entry(name + b"/inner.yaml", text.encode()))


def dangling_symlink(rng: random.Random, case: Case, _text: str) -> None:
    target = rng.choice([b"missing.yaml", b"/nonexistent/x.yaml", b"sub/none.yaml", b""])
    case.entries.append(Entry(b"gone.yaml", link=target or b"missing", kind="link"))


def symlink_loop(rng: random.Random, case: Case, _text: str) -> None:
    if rng.random() < 0.5:
        case.entries.append(Entry(b"self.yaml", link=b"self.yaml", kind="link"))
    else:
        case.entries.append(Entry(b"a.yaml", link=b"b.yaml", kind="link"))
        case.entries.append(Entry(b"b.yaml", link=b"a.yaml", kind="link"))
    if rng.random() < 0.3:
        case.entries.append(Entry(b"loopdir", link=b".", kind="link"))


def symlink_outside(rng: random.Random, case: Case, _text: str) -> None:
    target = rng.choice(
        [b"../outside/plan.yaml", b"OUTSIDE/plan.yaml", b"../outside", b"OUTSIDE", b"/etc/hostname"]
    )
    name = b"linked" if not target.endswith(b".yaml") and rng.random() < 0.5 else b"linked.yaml"
    case.entries.append(Entry(name, link=target, kind="link"))


def symlink_inside(rng: random.Random, case: Case, _text: str) -> None:
    first = case.entries[0].path if case.entries else b"finance.yaml"
    target = rng.choice([first, b"./" + first, b"sub/../" + first])
    case.entries.append(Entry(b"same.yaml", link=target, kind="link"))


def fifo(_rng: random.Random, case: Case, _text: str) -> None:
    case.entries.append(Entry(b"pipe.yaml", kind="fifo"))


def big_file(rng: random.Random, case: Case, text: str) -> None:
    """A file past the size bound: sparse, so that it costs no disk and no time to make."""
    size = rng.choice([8 * 1024 * 1024 + 1, 9 * 1024 * 1024, 1 << 40])
    case.entries.append(Entry(b"big.yaml", text.encode(), kind="sparse", size=size))


DirMutation = Callable[[random.Random, Case, str], None]
DIR_MUTATIONS: dict[str, DirMutation] = {
    "odd-file-name": odd_file_name,
    "case-suffix": case_suffix,
    "dir-named-yaml": dir_named_yaml,
    "dangling-symlink": dangling_symlink,
    "symlink-loop": symlink_loop,
    "symlink-outside": symlink_outside,
    "symlink-inside": symlink_inside,
    "fifo": fifo,
}
# Kinds that cost more than a few milliseconds a case: rarer in a quick run.
EXPENSIVE = {"alias-bomb": 0.3, "deep-nesting": 0.6}
SPECS_KINDS = ["missing", "file", "odd-name"]


def kinds() -> list[str]:
    return [
        "valid",
        *TEXT_MUTATIONS,
        *BYTE_MUTATIONS,
        *DIR_MUTATIONS,
        "big-file",
        "multi-document",
        "top-level-list",
        "combined",
        "specs-dir",
    ]


def generate(rng: random.Random, texts: dict[str, str], kind: str | None = None) -> Case:
    """One case: the seed files, one of them damaged by a mutation of `kind` (or a random one)."""
    all_kinds = kinds()
    while kind is None:
        kind = rng.choice(all_kinds)
        if rng.random() > EXPENSIVE.get(kind, 1.0):
            kind = None
    case = Case(kind)
    names = rng.sample(sorted(texts), rng.choice([1, 1, 2, 3]))
    target = names[0]
    text = texts[target]
    for name in names[1:]:
        case.entries.append(Entry(name.encode(), texts[name].encode()))
    data = _mutate(rng, case, kind, text, texts)
    if data is not None:
        case.entries.insert(0, Entry(target.encode(), data))
    if kind == "specs-dir":
        case.specs = rng.choice(SPECS_KINDS)
    if rng.random() < 0.1:
        case.command = "plan"
    return case


def _mutate(
    rng: random.Random, case: Case, kind: str, text: str, texts: dict[str, str]
) -> bytes | None:
    other = texts[rng.choice(sorted(texts))]
    if kind in TEXT_MUTATIONS:
        return TEXT_MUTATIONS[kind](rng, text).encode("utf-8", "surrogatepass")
    if kind in BYTE_MUTATIONS:
        return BYTE_MUTATIONS[kind](rng, text.encode())
    if kind in DIR_MUTATIONS:
        DIR_MUTATIONS[kind](rng, case, text)
        return text.encode()
    if kind == "big-file":
        big_file(rng, case, text)
        return None
    if kind == "multi-document":
        return multi_document(rng, text, other).encode()
    if kind == "top-level-list":
        return top_level_list(rng, text, other).encode()
    if kind == "combined":
        for _ in range(rng.choice([2, 3, 4])):
            mutation = rng.choice(list(TEXT_MUTATIONS.values()))
            if mutation is not alias_bomb:
                text = mutation(rng, text)
        data = text.encode("utf-8", "surrogatepass")
        return bit_flip(rng, data) if rng.random() < 0.3 else data
    return text.encode()  # valid, specs-dir


# ---- building and running -----------------------------------------------------


def build(case: Case, root: Path) -> Path:
    """Lay `case` out under `root` (which holds `outside/`), and return the spec directory."""
    specs = root / "specs"
    if case.specs == "odd-name":
        specs = root / os.fsdecode(b"sp\xffecs\n:1:")
    if case.specs == "missing":
        return specs
    if case.specs == "file":
        specs.write_text("not a directory\n")
        return specs
    specs.mkdir(parents=True, exist_ok=True)
    outside_dir(root)
    outside = os.fsencode(root / "outside")
    for entry in case.entries:
        path = specs / os.fsdecode(entry.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            continue
        if entry.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
        elif entry.kind == "fifo":
            os.mkfifo(path)
        elif entry.kind == "link":
            assert entry.link is not None
            path.symlink_to(os.fsdecode(entry.link.replace(b"OUTSIDE", outside)))
        else:
            with path.open("wb") as f:
                f.write(entry.data or b"")
                if entry.kind == "sparse":
                    f.truncate(entry.size)
    return specs


_OUTSIDE = seeds()["hr.yaml"].replace("hr", "outsider")


def outside_dir(root: Path) -> None:
    """What symlinks that leave the spec directory point at: a valid spec."""
    (root / "outside").mkdir(parents=True, exist_ok=True)
    (root / "outside" / "plan.yaml").write_text(_OUTSIDE)


@dataclass
class Outcome:
    code: int | None
    stdout: bytes
    stderr: bytes
    seconds: float
    escaped: str | None = None  # a traceback that left main()


class CaseTimeoutError(Exception):
    """A case ran past its time box."""


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise CaseTimeoutError


_PARSER: list[argparse.ArgumentParser] = []


def run_in_process(argv: list[str], limit: float = MAX_SECONDS * 3) -> Outcome:
    """`drctl ARGV` in this process; stdout strict UTF-8 and stderr backslashreplace, as a terminal.

    The parser is built once (it takes longer than most cases); `cli.run` is
    what `drctl` runs once it has parsed its arguments.
    """
    from reconciler.cli import main as cli

    if not _PARSER:
        _PARSER.append(cli.build_parser())

    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", errors="backslashreplace", write_through=True)
    saved = sys.stdout, sys.stderr
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    started = time.perf_counter()
    code: int | None = None
    escaped = None
    try:
        sys.stdout, sys.stderr = stdout, stderr
        try:
            code = cli.run(_PARSER[0].parse_args(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 (what the fuzzer looks for: anything)
            escaped = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.stdout, sys.stderr = saved
    seconds = time.perf_counter() - started
    return Outcome(code, out.getvalue(), err.getvalue(), seconds, escaped)


def argv_for(case: Case, specs: Path, state_dir: Path | None) -> list[str]:
    if case.command == "plan" and state_dir is not None:
        return ["plan", str(specs), "--state-dir", str(state_dir)]
    return ["validate", str(specs)]


# ---- the contract -------------------------------------------------------------

# `file:line: message`, the file quoted with escapes when its name needs it.
_LOCATED = re.compile(rb'^("(?:[^"\\]|\\.)*"|[^":\n]+):(\d+): (.+)$')
_DIRECTORY = re.compile(rb'^("(?:[^"\\]|\\.)*"|[^":\n]+): (.*\bdirectory\b.*)$')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
_SIMPLE = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b'"': b'"', b"\\": b"\\"}


def unquote(shown: bytes) -> bytes:
    """The file name a message printed, as bytes: `"a\\nb\\xff"` is a, newline, b, byte ff."""
    if not (shown.startswith(b'"') and shown.endswith(b'"')):
        return shown

    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        if code[:1] in (b"u", b"U"):
            return chr(int(code[1:], 16)).encode("utf-8", "surrogatepass")
        return _SIMPLE.get(code, code)

    return _ESCAPE.sub(one, shown[1:-1])


def line_count(name: bytes) -> int | None:
    """Lines of the file as drctl numbers them (by newline); None if it cannot be read."""
    path = Path(os.fsdecode(name))
    try:
        if not path.is_file() or path.stat().st_size > 64 * 1024 * 1024:
            return None  # drctl reads neither (nor a FIFO, which would block here)
        data = path.read_bytes()
    except OSError:
        return None
    # Newlines as Python reads text: a CR alone ends a line too.
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def violations(case: Case, outcome: Outcome, specs: Path) -> Iterator[str]:
    """Every way `outcome` breaks the contract for `case`."""
    if outcome.escaped is not None:
        yield f"exception escaped main(): {outcome.escaped.strip().splitlines()[-1]}"
        return
    if outcome.seconds > MAX_SECONDS:
        yield f"took {outcome.seconds:.1f} s"
    text = outcome.stdout + outcome.stderr
    if b"Traceback (most recent call last)" in text:
        yield "printed a traceback"
    # `plan` also observes the fabric: one it cannot open is a runtime error (3).
    wanted = {0, 2} if case.command == "validate" else {0, 1, 2, 3}
    if b"internal error" in outcome.stderr or outcome.code not in wanted:
        yield f"exit {outcome.code}: {outcome.stderr.decode(errors='replace').strip()[:300]}"
    if outcome.code == 0 and case.command == "validate" and not outcome.stdout.strip():
        yield "exit 0 without saying valid"
    try:
        (outcome.stdout + outcome.stderr).decode("utf-8")
    except UnicodeDecodeError:
        yield "output is not UTF-8"
    for line in outcome.stderr.splitlines():
        yield from _line_violations(line, outcome.code, specs)


def _line_violations(line: bytes, code: int | None, specs: Path) -> Iterator[str]:
    if len(line) > MAX_MESSAGE * 4 or len(line.decode("utf-8", "replace")) > MAX_MESSAGE:
        yield f"message of {len(line)} bytes: {line[:120]!r}..."
    if code != 2 or line.startswith(b"drctl: the daemon"):
        return
    located = _LOCATED.match(line)
    if located is None:
        if _DIRECTORY.match(line) is None:
            yield f"not file:line: {line[:200]!r}"
        elif not _names_directory(unquote(_DIRECTORY.match(line).group(1)), specs):  # type: ignore[union-attr]
            yield f"a directory problem names another path: {line[:200]!r}"
        return
    name = unquote(located.group(1))
    number = int(located.group(2))
    lines = line_count(name)
    if lines is None:
        if number != 1:
            yield f"line {number} of a file that cannot be read: {line[:200]!r}"
        return
    if not 1 <= number <= max(lines, 1):
        yield f"line {number} outside a file of {lines} lines: {line[:200]!r}"
    if not name.startswith(os.fsencode(specs)) and not Path(os.fsdecode(name)).exists():
        yield f"names a file that does not exist: {line[:200]!r}"


def _names_directory(name: bytes, specs: Path) -> bool:
    """Whether `name` is the spec directory (which may not exist) or a directory in it."""
    return name == os.fsencode(specs) or (
        name.startswith(os.fsencode(specs) + b"/") and Path(os.fsdecode(name)).is_dir()
    )


def fresh(root: Path) -> Path:
    """An empty directory for one case under `root`."""
    shutil.rmtree(root / "case", ignore_errors=True)
    (root / "case").mkdir(parents=True)
    return root / "case"
