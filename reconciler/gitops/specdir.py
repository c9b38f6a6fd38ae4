"""The directory of spec files: which files are specs, read them, validate them.

`load_specs(directory)` is what the CLI and the daemon call: it reads every
`*.yaml`/`*.yml` file under the directory (hidden paths skipped) and hands the
texts to the pure `core.spec`, with the cyclic garbage collector paused (a
100k-VM spec builds a large heap of young objects; perf-notes.md). The texts
validated are the ones lines are found in, never a second read of a file.
`list_specs` says which files those are, and what under the directory looks
like a spec but cannot be read as one: `revision` hashes both, the daemon
saves the files of the revision in force.

Nothing that looks like a spec is skipped in silence: a name ending in
`.YAML` or `.Yml`, a directory named `*.yaml`, a FIFO, a broken symbolic
link of any name (dangling or a loop: it may have been a directory), a link
that leaves the spec directory (and so, maybe, the repository) and a file
over MAX_FILE_BYTES are each a problem of that path, and the directory is
invalid until it is fixed. A link to a spec file inside the directory is
read; a link to a directory inside it is not followed, its files are read
where they are.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from reconciler.core import spec
from reconciler.core.desired import DesiredState
from reconciler.core.spec import parse
from reconciler.errors import SpecError, SpecProblem
from reconciler.kits import gcpause

SUFFIXES = (".yaml", ".yml")
MAX_FILE_BYTES = parse.MAX_CHARS


@dataclass
class Listing:
    """The spec files under a directory, and a problem for each path refused."""

    files: list[Path] = field(default_factory=list)
    refused: list[SpecProblem] = field(default_factory=list)

    def refuse(self, path: Path, why: str, directory: bool = False) -> None:
        # A directory's problem has no line; a file's is at its line 1.
        self.refused.append(SpecProblem(str(path), 0 if directory else 1, why))


def load_specs(directory: Path) -> DesiredState:
    """Load and validate every RecoveryPlan and Fabric under `directory`."""
    listing = list_specs(directory)
    texts: dict[Path, str] = {}
    unreadable = list(listing.refused)
    for file in listing.files:
        text = read_spec(file)
        if isinstance(text, SpecProblem):
            unreadable.append(text)
        else:
            texts[file] = text
    with gcpause.gc_paused():
        return spec.load_files(texts, unreadable)


def load_plans(directory: Path) -> DesiredState:
    """`load_specs`, and a SpecError (exit 2) when the specs hold no RecoveryPlan nor Fabric.

    For the commands that act on plans (validate, plan, apply, status): an
    empty or wrong directory is a mistake to name with what was searched,
    never "converged". The daemon keeps its own rule (`daemon.change`).
    """
    desired = load_specs(directory)
    require_plans(directory, desired)
    return desired


def require_plans(directory: Path, desired: DesiredState) -> None:
    """A SpecError naming what was searched when `desired` holds no RecoveryPlan nor Fabric.

    `load_plans` asks it, and the daemon for the first revision it would put in force.
    """
    if desired.plans or desired.fabrics:
        # A declared Fabric and no plan is the right directory with its last plan
        # retired (`apply` then deletes what drctl kept for it in the fabric).
        return
    files = spec_files(directory)
    if not files:
        searched = "no spec file (*.yaml or *.yml, in it or below it; hidden paths skipped)"
    else:
        names = ", ".join(str(f.relative_to(directory)) for f in files[:5])
        more = f" and {len(files) - 5} more" if len(files) > 5 else ""
        searched = (
            f"{len(files)} spec files ({names}{more}), which declare no RecoveryPlan or Fabric"
        )
    why = (
        f"the spec directory holds no RecoveryPlan: searched {searched}; point drctl at the "
        "directory that holds the plans (in a clone of the specs repository, usually its specs/)"
    )
    raise SpecError([SpecProblem(str(directory), 0, why)])


def spec_files(directory: Path) -> list[Path]:
    """Every spec file under `directory`, in a stable order; hidden paths skipped."""
    return list_specs(directory).files


def is_spec_path(relative: PurePath) -> bool:
    """Whether a path relative to the spec directory names a spec file (not hidden)."""
    return relative.suffix in SUFFIXES and not any(part.startswith(".") for part in relative.parts)


def list_specs(directory: Path) -> Listing:
    """The spec files under `directory` and what looks like one but is refused.

    `SpecError` when `directory` is not a directory that can be listed.
    """
    try:
        root = Path(os.path.realpath(directory))
        if not stat.S_ISDIR(directory.stat().st_mode):
            raise _not_a_directory(directory, "is a file, not a directory")
    except OSError as exc:
        raise _not_a_directory(directory, _directory_why(exc)) from exc
    listing = Listing()
    pending = [directory]
    while pending:
        here = pending.pop()
        try:
            with os.scandir(here) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            if here == directory:
                raise _not_a_directory(directory, _directory_why(exc)) from exc
            listing.refuse(here, f"this directory {_directory_why(exc)}", directory=True)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if _sort(path, entry, root, listing):
                    pending.append(path)
            except OSError as exc:  # changed while being listed
                if entry.name.lower().endswith(SUFFIXES):
                    listing.refuse(path, f"cannot read the file: {_file_why(exc)}")
    listing.files.sort()
    return listing


def _sort(path: Path, entry: os.DirEntry[str], root: Path, listing: Listing) -> bool:
    """File `entry` in `listing`; True if it is a directory to look into."""
    named_spec = entry.name.lower().endswith(SUFFIXES)
    if entry.is_symlink():
        return _sort_link(path, named_spec, root, listing)
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISDIR(mode):
        if named_spec:
            listing.refuse(
                path,
                "a directory named like a spec file: rename it (the files in it are read as "
                "those of any directory are)",
                directory=True,
            )
        return True
    if named_spec:
        _sort_file(path, mode, listing)
    return False


def _sort_link(path: Path, named_spec: bool, root: Path, listing: Listing) -> bool:
    target = path.readlink()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            why = f"a symbolic link loop (to {target})"
        elif exc.errno in {errno.ENOENT, errno.ENOTDIR}:
            why = f"a symbolic link to {target}, which does not exist"
        else:
            why = f"a symbolic link to {target}, which cannot be followed: {_file_why(exc)}"
        listing.refuse(path, f"{why}: fix or remove the link")
        return False
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        if named_spec or stat.S_ISDIR(mode):
            listing.refuse(
                path,
                f"a symbolic link to {real}, outside the spec directory: drctl reads only "
                "what is in it (and so in the repository); copy the file in instead",
            )
        return False
    if stat.S_ISDIR(mode):
        return False  # its files are read where they are, in the spec directory
    if named_spec:
        _sort_file(path, mode, listing)
    return False


def _sort_file(path: Path, mode: int, listing: Listing) -> None:
    if not stat.S_ISREG(mode):
        listing.refuse(path, _NOT_REGULAR)
    elif path.suffix not in SUFFIXES:
        listing.refuse(
            path,
            f"a spec file's name ends in .yaml or .yml, in lower case: rename it to "
            f"{path.stem}{path.suffix.lower()}, or move it out of the spec directory",
        )
    else:
        listing.files.append(path)


_NOT_REGULAR = "not a regular file (a FIFO, a socket or a device): remove it"


def read_spec(file: Path) -> str | SpecProblem:
    """The text of spec file `file`, or why it cannot be read."""
    data = read_spec_bytes(file)
    return data if isinstance(data, SpecProblem) else decode_spec(str(file), data)


def read_spec_bytes(file: Path) -> bytes | SpecProblem:
    """The bytes of spec file `file` (at most MAX_FILE_BYTES), or why it cannot be read."""
    try:
        # O_NONBLOCK: a FIFO put in the file's place since it was listed must
        # not block the pass; it is then refused as not a regular file.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return SpecProblem(str(file), 1, f"cannot read the file: {_file_why(exc)}")
    with os.fdopen(fd, "rb") as f:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return SpecProblem(str(file), 1, _NOT_REGULAR)
            if info.st_size > MAX_FILE_BYTES:
                return SpecProblem(str(file), 1, _too_large(info.st_size))
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            return SpecProblem(str(file), 1, f"cannot read the file: {_file_why(exc)}")
    if len(data) > MAX_FILE_BYTES:
        return SpecProblem(str(file), 1, _too_large(len(data)))
    return data


def decode_spec(name: str, data: bytes) -> str | SpecProblem:
    """`data`, the bytes of spec file `name`, as UTF-8 text; or what to do when it is not.

    Newlines are read as Python reads text: CRLF and a CR alone end a line.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return SpecProblem(name, 1, "the file is UTF-16 text: save it as UTF-8")
    try:
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        # Lines as they are counted once decoded: a lone CR ends one too.
        before = data[: exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        return SpecProblem(
            name,
            line,
            f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} at column {column}; "
            "save it as UTF-8",
        )


def _too_large(size: int) -> str:
    return (
        f"the file is {size / 1024 / 1024:.1f} MB; a spec file is at most "
        f"{MAX_FILE_BYTES // 1024 // 1024} MB: split it into several files"
    )


def _not_a_directory(directory: Path, why: str) -> SpecError:
    return SpecError([SpecProblem(str(directory), 0, f"the spec directory {why}")])


def _directory_why(exc: OSError) -> str:
    """What is wrong with a directory, said after "the spec directory"."""
    if exc.errno == errno.ENOENT:
        return "does not exist"
    if exc.errno == errno.ENOTDIR:
        return "is not a directory"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop"
    return f"cannot be read: {_file_why(exc)}"


def _file_why(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()
