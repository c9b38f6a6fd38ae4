"""The daemon's desired state, kept file by file: a commit re-parses only the files it changed.

`SpecCache.load(directory)` is `specdir.load_specs(directory)` for a caller
that loads the same directory again and again (the daemon, on each change
and each resync): it lists and reads every spec file as `load_specs` does,
and keeps what each file's text resolved to on its own (`spec.load_file`:
its plans and fabrics, validated, and its own problems and warnings) under
the file's path and its content's git blob id (`blob_id`: what `git
hash-object` prints, so the id of the file's blob in a clean checkout, and
a hash of the bytes read wherever the file differs from any commit). A file
whose path and bytes are those of a file kept is not parsed again; the
rules that span files (plan, VM and fabric names) run on what the files
resolved to (`spec.combine_files`), the names counted file by file
(`spec.Names`). What comes back, or the `SpecError`
raised, is what `load_specs` gives for the same files: an invalid change
leaves the daemon's revision in force as it did (daemon/in_force.py).

The bytes are read every time, never taken from git's index: a file is
keyed by what is parsed, so a checkout half-way or a file edited by hand
can never be mistaken for the one kept. Files gone are dropped from the
cache at the next load. Called by `daemon.in_force.load`, from the loop.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from reconciler.core import spec
from reconciler.core.desired import DesiredState
from reconciler.errors import SpecProblem
from reconciler.gitops import specdir
from reconciler.kits import gcpause


def blob_id(data: bytes) -> str:
    """The git blob id of a file of these bytes (`git hash-object`)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


class SpecCache:
    """Each spec file's validated documents under a directory, by path and content."""

    def __init__(self) -> None:
        self._files: dict[tuple[Path, str], spec.FileSpecs] = {}
        self._names = spec.Names()  # of the files kept
        self.parsed = 0  # files parsed by the last load (the rest were kept)

    def load(self, directory: Path) -> DesiredState:
        """`specdir.load_specs(directory)`, parsing only the files not kept."""
        listing = specdir.list_specs(directory)
        unreadable = list(listing.refused)
        files: list[spec.FileSpecs] = []
        kept: dict[tuple[Path, str], spec.FileSpecs] = {}
        self.parsed = 0
        with gcpause.gc_paused():
            for file in listing.files:
                data = specdir.read_spec_bytes(file)
                if isinstance(data, SpecProblem):
                    unreadable.append(data)
                    continue
                key = (file, blob_id(data))
                loaded = self._files.get(key)
                if loaded is None:
                    text = specdir.decode_spec(str(file), data)
                    if isinstance(text, SpecProblem):
                        unreadable.append(text)
                        continue
                    loaded = spec.load_file(file, text)
                    self.parsed += 1
                kept[key] = loaded
                files.append(loaded)
            for key, loaded in self._files.items():
                if key not in kept:
                    self._names.remove(loaded)
            for key, loaded in kept.items():
                if key not in self._files:
                    self._names.add(loaded)
            self._files = kept
            return spec.combine_files(files, unreadable, self._names)
