"""`drctl audit`: who moved what where, when, and did it converge.

Replays the git history of a spec directory (history.py) commit by commit,
validates each revision as the daemon does (`spec.load_text`, `spec.combine`)
and reports, per commit, the changes to each VM's effective desired state
(defaults applied), joined with the journal's actions recorded under that
revision and the time the VM converged. `cli.main` calls `audit_history`, then
prints `AuditEntry.to_json()` or `text_lines`.

As the daemon does, an invalid revision changes nothing: it is reported with
its problems and the next change is measured from the last valid revision.

Cost: each distinct (path, blob) is read and validated once, and its VMs'
states built once; a revision then costs a keyed comparison of its VMs with
the last valid revision (perf-notes.md), and only the VMs that differ are
compared field by field, by `difference.compare_fields` as `drctl plan` does:
DeepDiff, run once per distinct pair of states (a VM's state carries no name,
so a 10,000-commit history has a few dozen), not once per change
(bench/audit_scale.py).
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from reconciler import errors
from reconciler.core import spec
from reconciler.core.desired import DesiredVM, PlanSpec
from reconciler.engine import intervention, journal, journal_backend
from reconciler.engine import state_dir as layout
from reconciler.gitops import git, history, signature, specdir
from reconciler.kits import difference, gcpause

# A VM's effective desired state as the JSON names its fields, in VMState's order.
FIELDS = (
    "activeSite",
    "replication",
    "allowDataLoss",
    "group",
    "plan",
    # The keys an operator commits to let drctl lose, delete or overwrite data
    # (issue 9): who allowed what, and when, is the point of the audit.
    "dataLossConsent",
    "commit",
    "commitApproved",
    "discardLostWrites",
    "recoveryPoint",
    "confirmDisableReplication",
)
Change = difference.Change  # field -> (old, new); None where the VM did not exist
_Key = tuple[str, str]  # (path relative to the spec directory, blob sha)

# Validated files kept for a revert to meet again (more when a revision has
# more files): a few MB for plans of a few hundred VMs.
_CACHED_FILES = 512


class VMState(NamedTuple):
    """One VM's effective desired state: defaults and policies applied."""

    active_site: str
    replication: str  # `<from>-><to>` or `off`
    allow_data_loss: bool
    group: str | None
    plan: str
    data_loss_consent: str | None = None  # a scoped allowDataLoss, as written
    commit: str = "auto"
    commit_approved: str | None = None
    discard_lost_writes: str | None = None
    recovery_point: str = "latest"
    confirm_disable_replication: bool = False


@dataclass
class AuditEntry:
    """One VM changed (or acted on) by one commit, or one invalid commit (vm None)."""

    revision: str
    author: str
    date: str
    message: str
    plan: str | None
    vm: str | None
    change: Change
    actions: list[dict[str, Any]] = field(default_factory=list)
    converged_at: datetime | None = None
    invalid: list[str] | None = None  # `file:line: message` when the commit's specs are invalid
    # Who signed the commit, with which key: for the revisions that moved VMs only.
    signed: signature.Signature | None = None
    # Break-glass under this revision (engine/intervention.py): a retry per VM, a
    # reconcile request on the entry of the commit itself (plan and vm None).
    interventions: list[intervention.Intervention] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The entry as `drctl audit --output json` prints it."""
        doc: dict[str, Any] = {
            "revision": self.revision,
            "author": self.author,
            "date": self.date,
            "message": self.message,
            "plan": self.plan,
            "vm": self.vm,
            "change": {name: [old, new] for name, (old, new) in self.change.items()},
            "actions": self.actions,
            "convergedAt": _iso(self.converged_at),
            "signature": None if self.signed is None else self.signed.to_json(),
        }
        if self.invalid is not None:
            doc["invalid"] = self.invalid
        if self.interventions:  # only where some were made, as `invalid`
            doc["interventions"] = [_intervention_json(i, self.vm) for i in self.interventions]
        return doc


def parse_since(text: str) -> datetime:
    """`--since`: an ISO 8601 date or datetime; without a zone, local time (as git reads it)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise errors.UsageError(
            f"--since must be an ISO date or datetime, e.g. 2026-11-26 or "
            f"2026-11-26T12:00:00+00:00, not {text!r}"
        ) from exc
    return parsed if parsed.tzinfo is not None else parsed.astimezone()


def audit_history(
    specs_dir: Path,
    state_dir: Path | None,
    vm: str | None = None,
    since: datetime | None = None,
    allowed_signers: Path | None = None,
    shared: journal_backend.Backend | None = None,
) -> list[AuditEntry]:
    """The audit of `specs_dir`'s history, oldest commit first.

    `state_dir` holds the journal; without one, entries have no actions and
    no convergence. `since` keeps the commits committed at or after it (git's
    `--since`, on the committer date); the first change is still measured
    from the last valid revision before it. Each revision that moved VMs (a
    VM's desired site changed, or drctl acted under it) says who signed it
    (SSH signatures checked against `allowed_signers`). Raises `UsageError`
    when `specs_dir` is not in a git work tree. `shared`: the journal in
    etcd of a `--lock` replica, read instead of the state dir's.
    """
    repo = history.open_repo(specs_dir)
    tip = history.head(repo)
    if tip is None:
        return []
    commits = history.spec_commits(repo, tip, since)
    if not commits:
        return []
    records = _Records.read(state_dir, shared)
    mapped = _revisions_by_commit(repo, tip, since, commits, records)
    specs = _Specs(repo, specs_dir)
    cursor = _Cursor(specs)
    start = history.parent(repo, commits[0].sha) if since is not None else None
    if start is not None:
        cursor.tree = history.spec_tree(repo, start)
    with specs.streaming([*sorted(cursor.tree.items()), *_keys(commits)]), gcpause.gc_paused():
        if start is not None:
            base = specs.state(cursor.tree)
            if isinstance(base, list):
                cursor.problems = base
                cursor.valid = _last_valid_before(repo, specs_dir, start)
            else:
                cursor.valid = base
        entries = _replay(commits, cursor, records, mapped)
    if vm is not None:
        entries = [e for e in entries if e.vm == vm]
    _sign(specs_dir, entries, signature.Policy(allowed_signers))
    return entries


def _sign(specs_dir: Path, entries: list[AuditEntry], policy: signature.Policy) -> None:
    """Who signed each revision that moved VMs: one git process, gpg for each signed one."""
    moving = {e.revision for e in entries if e.actions or _moves(e.change)}
    found = signature.describe(specs_dir, sorted(moving), policy)
    for entry in entries:
        entry.signed = found.get(entry.revision)


def _moves(change: Change) -> bool:
    old, new = change.get("activeSite", (None, None))
    return old is not None and new is not None


def text_lines(entries: list[AuditEntry]) -> Iterator[str]:
    """The audit as `drctl audit` prints it: a header per commit, then a block per VM."""
    if not entries:
        yield "no change to the desired state in this history\n"
    current = None
    for entry in entries:
        if entry.revision != current:
            current = entry.revision
            yield f"{entry.revision[:12]}  {entry.date}  {entry.author}: {entry.message}\n"
            if entry.signed is not None:
                yield f"  {_signature_text(entry.signed)}\n"
        if entry.invalid is not None:
            yield "  invalid, nothing changes (the last valid revision stays in force):\n"
            yield from (f"    {problem}\n" for problem in entry.invalid)
            continue
        if entry.vm is None:  # the revision's own break-glass: reconcile requests
            yield from (f"  {line}\n" for i in entry.interventions for line in i.lines())
            continue
        yield f"  {entry.plan}/{entry.vm}\n"
        values = entry.change.values()
        added = bool(values) and all(old is None for old, _ in values)
        removed = bool(values) and all(new is None for _, new in values)
        if added or removed:
            side = 1 if added else 0
            listed = ", ".join(
                f"{name} {json.dumps(pair[side])}" for name, pair in entry.change.items()
            )
            yield f"    {'added' if added else 'removed'}: {listed}\n"
        else:
            for name, (old, new) in entry.change.items():
                yield f"    {name}: {json.dumps(old)} -> {json.dumps(new)}\n"
        yield from (f"    {line}\n" for line in _acted_lines(entry))
        if entry.converged_at is not None:
            yield f"    converged at {_iso(entry.converged_at)}\n"
        elif not removed:
            yield "    not seen converged\n"


# ---------------------------------------------------------------------------
# Replaying the history.


@dataclass(frozen=True)
class _File:
    """One spec file's text at one blob, validated."""

    name: str  # as `drctl validate SPECS_DIR` prints it
    text: str
    plans: list[PlanSpec]
    problems: list[errors.SpecProblem]
    vms: dict[str, VMState] = field(default_factory=dict)


class _Specs:
    """Validates the files of revisions, each (path, blob) once while it stays cached."""

    def __init__(self, repo: history.Repo, specs_dir: Path) -> None:
        self._repo = repo
        self._dir = specs_dir
        # Least recently used first. Bounded, so that memory follows the size
        # of the specs rather than the length of the history.
        self._files: OrderedDict[_Key, _File] = OrderedDict()
        self._stream: git.BlobStream | None = None
        self._position: dict[_Key, int] = {}  # each key's place in the stream
        self._read = 0  # blobs taken from the stream so far
        self._names: dict[str, str] = {}  # path -> the name problems are reported under

    @contextlib.contextmanager
    def streaming(self, keys: Iterable[_Key]) -> Iterator[None]:
        """Read the blobs of `keys` from one git process, in the order the replay meets them."""
        order = list(dict.fromkeys(keys))
        self._position = {key: i for i, key in enumerate(order)}
        self._read = 0
        with history.stream_blobs(self._repo, [sha for _, sha in order]) as stream:
            self._stream = stream
            try:
                yield
            finally:
                self._stream = None

    def state(self, tree: Mapping[str, str]) -> dict[str, VMState] | list[str]:
        """Each VM's effective state in a revision made of `tree`, or its problems."""
        files = [self._file(path, blob, len(tree)) for path, blob in sorted(tree.items())]
        problems = [problem for file in files for problem in file.problems]
        # One file was checked whole by load_text; several need the rules
        # across files (a plan or VM name in two of them).
        if not problems and len(files) > 1:
            try:
                spec.combine(
                    [p for file in files for p in file.plans],
                    {file.name: file.text for file in files},
                )
            except errors.SpecError as exc:
                problems = exc.problems
        if problems:
            return [str(p) for p in sorted(problems)]
        if len(files) == 1:
            return files[0].vms  # shared, never mutated
        merged: dict[str, VMState] = {}
        for file in files:
            merged.update(file.vms)
        return merged

    def _file(self, path: str, blob: str, in_tree: int) -> _File:
        key = (path, blob)
        file = self._files.get(key)
        if file is not None:
            self._files.move_to_end(key)
            return file
        if path not in self._names:
            self._names[path] = str(self._dir / path)
        file = self._files[key] = self._validate(self._names[path], self._contents(key))
        while len(self._files) > max(_CACHED_FILES, 2 * in_tree):
            self._files.popitem(last=False)
        return file

    def _contents(self, key: _Key) -> bytes:
        position = self._position.get(key, -1)
        if self._stream is not None and position >= self._read:
            while self._read <= position:  # past blobs nobody asked for, if any
                _sha, contents = self._stream.read()
                self._read += 1
            return contents
        # Met again after it left the cache: one more git process.
        return history.read_blobs(self._repo, [key[1]])[key[1]]

    def _validate(self, name: str, contents: bytes) -> _File:
        text = specdir.decode_spec(name, contents)
        if isinstance(text, errors.SpecProblem):
            return _File(name, "", [], [text])
        try:
            plans = spec.load_text(name, text)
        except errors.SpecError as exc:
            return _File(name, text, [], exc.problems)
        vms = {
            vm.name: VMState(
                vm.active_site,
                vm.replication_text,
                vm.allow_data_loss,
                vm.group,
                vm.plan,
                _scoped_consent(vm),
                vm.commit,
                vm.commit_approved,
                vm.discard_lost_writes,
                vm.recovery_point,
                vm.confirm_disable_replication,
            )
            for plan in plans
            for vm in plan.vms
        }
        return _File(name, text, plans, [], vms)


@dataclass
class _Cursor:
    """The files of the revision being replayed and the last valid state."""

    specs: _Specs
    tree: dict[str, str] = field(default_factory=dict)
    valid: dict[str, VMState] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # of the current revision

    def step(self, commit: history.Commit) -> tuple[list[str], dict[str, Change]]:
        """Apply `commit`: its problems, or its changes from the last valid state."""
        if not commit.changes:  # only files that are not specs: same revision content
            return self.problems, {}
        for path, blob in commit.changes:
            if blob is None:
                self.tree.pop(path, None)
            else:
                self.tree[path] = blob
        state = self.specs.state(self.tree)
        if isinstance(state, list):
            self.problems = state
            return state, {}
        self.problems = []
        changes = _changes(self.valid, state)
        self.valid = state
        return [], changes


def _replay(
    commits: list[history.Commit],
    cursor: _Cursor,
    records: _Records,
    mapped: dict[str, list[str]],
) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    # Entries of each VM since its desired state last changed: a convergence
    # recorded under a later revision that left the VM alone still answers
    # "did it converge" for them (the daemon records every converged VM under
    # every revision in force).
    window: dict[str, list[AuditEntry]] = {}
    for commit in commits:
        problems, changes = cursor.step(commit)
        if problems:
            entries.append(_commit_entry(commit, invalid=problems))
            continue
        revisions = [commit.sha, *mapped.get(commit.sha, [])]
        acted = records.actions_under(revisions)
        broke = [i for i in records.interventions if i.revision in revisions]
        retried = {vm: plan for i in broke if i.kind == intervention.RETRY for plan, vm, _ in i.vms}
        found: list[AuditEntry] = []
        for name in changes.keys() | acted.keys() | retried.keys():
            change = changes.get(name, {})
            plan, actions = acted.get(name, (retried.get(name), []))
            state = cursor.valid.get(name)
            if state is not None:
                plan = state.plan
            elif "plan" in change:
                plan = change["plan"][0]
            entry = AuditEntry(
                commit.sha, commit.author, commit.date, commit.subject, plan, name, change, actions
            )
            entry.interventions = [i for i in broke if any(vm == name for _, vm, _ in i.vms)]
            if change:
                window[name] = [entry]
            else:
                window.setdefault(name, []).append(entry)
            found.append(entry)
        asked = [i for i in broke if i.kind == intervention.RECONCILE]
        if asked:
            found.append(_commit_entry(commit, interventions=asked))
        entries.extend(sorted(found, key=lambda e: (e.plan or "", e.vm or "")))
        for name, at in records.convergences_under(revisions).items():
            for entry in window.get(name, []):
                if entry.converged_at is None or at < entry.converged_at:
                    entry.converged_at = at
    return entries


def _commit_entry(
    commit: history.Commit,
    invalid: list[str] | None = None,
    interventions: list[intervention.Intervention] | None = None,
) -> AuditEntry:
    """The entry of a commit itself (no VM): its problems, or the reconciles asked under it."""
    return AuditEntry(
        commit.sha,
        commit.author,
        commit.date,
        commit.subject,
        None,
        None,
        {},
        invalid=invalid,
        interventions=interventions or [],
    )


def _scoped_consent(vm: DesiredVM) -> str | None:
    """`allowDataLoss: {from, until}` or `{revision}` in words; None when not scoped."""
    if vm.data_loss_window is not None:
        site, until = vm.data_loss_window
        return f"from {site} until {until.isoformat()}"
    if vm.data_loss_revision is not None:
        return f"revision {vm.data_loss_revision}"
    return None


def _changes(old: dict[str, VMState], new: dict[str, VMState]) -> dict[str, Change]:
    """Per VM whose effective state differs: field -> (old, new)."""
    if old is new:
        return {}
    # The keyed comparison, in C: (name, state) pairs in one revision only.
    # Only those VMs go to the field comparison (DeepDiff, remembered per
    # pair of states), the one `drctl plan` uses for its changes.
    differing = {name for name, _ in old.items() ^ new.items()}
    return {
        name: _quiet(difference.compare_fields(FIELDS, old.get(name), new.get(name)))
        for name in differing
    }


# The safety keys at their defaults: left out of a VM that appears or goes,
# where they would only say that nobody set them.
_DEFAULTS = dict(zip(FIELDS[5:], VMState("", "", False, None, "")[5:], strict=True))


def _quiet(change: Change) -> Change:
    return {
        field: (old, new)
        for field, (old, new) in change.items()
        if field not in _DEFAULTS or {old, new} - {None, _DEFAULTS[field]}
    }


def _last_valid_before(repo: history.Repo, specs_dir: Path, commit: str) -> dict[str, VMState]:
    """The last valid state up to `commit`, by replaying its whole history.

    Only for the rare --since window that opens on an invalid revision.
    """
    earlier = history.spec_commits(repo, commit)
    past = _Specs(repo, specs_dir)
    cursor = _Cursor(past)
    with past.streaming(_keys(earlier)):
        for previous in earlier:
            cursor.step(previous)
    return cursor.valid


def _keys(commits: list[history.Commit]) -> Iterator[_Key]:
    """The (path, blob) of every file the commits set, in order."""
    for commit in commits:
        for path, blob in commit.changes:
            if blob is not None:
                yield path, blob


def _revisions_by_commit(
    repo: history.Repo,
    tip: str,
    since: datetime | None,
    commits: list[history.Commit],
    records: _Records,
) -> dict[str, list[str]]:
    """Journal revisions of commits that did not touch the specs, by the spec commit they carry.

    The daemon records HEAD's sha, and HEAD is often a commit elsewhere in the
    repository (a README, CI): its specs are those of the last commit that
    changed them, so its actions and convergences belong to that commit.
    Dirty revisions (`sha+dirty.<hash>`) are not commits and are left out.
    """
    spec_shas = {c.sha for c in commits}
    others = {
        r for r in records.revisions() if r not in spec_shas and "+" not in r and ":" not in r
    }
    if not others:
        return {}
    mapped: dict[str, list[str]] = {}
    current = None
    for sha in history.first_parent_shas(repo, tip, since):
        if sha in spec_shas:
            current = sha
        elif current is not None and sha in others:
            mapped.setdefault(current, []).append(sha)
    return mapped


# ---------------------------------------------------------------------------
# The journal, read once.


@dataclass
class _Records:
    """The journal's actions and convergences by revision and VM."""

    # revision -> VM -> (plan, [(journal id, action as JSON)])
    actions: dict[str, dict[str, tuple[str, list[tuple[int, dict[str, Any]]]]]]
    converged: dict[str, dict[str, datetime]]  # revision -> VM -> first converged
    interventions: list[intervention.Intervention] = field(default_factory=list)

    @classmethod
    def read(
        cls, state_dir: Path | None, shared: journal_backend.Backend | None = None
    ) -> _Records:
        records = cls({}, {})
        db: journal_backend.Backend
        if shared is not None:
            db = shared
        # Never create a journal: an audit only reads.
        elif state_dir is None or not layout.journal_path(state_dir).is_file():
            return records
        else:
            db = journal.Journal(state_dir, writer=False)
        try:
            entries, convergences = db.entries(), db.convergences()
            records.interventions = db.interventions()
        finally:
            db.close()
        for e in entries:
            by_vm = records.actions.setdefault(e.revision, {})
            by_vm.setdefault(e.vm, (e.plan, []))[1].append((e.id, _action_json(e)))
        for (revision, vm), at in convergences.items():
            records.converged.setdefault(revision, {})[vm] = at
        return records

    def revisions(self) -> set[str]:
        broke = {i.revision for i in self.interventions if i.revision is not None}
        return self.actions.keys() | self.converged.keys() | broke

    def actions_under(self, revisions: list[str]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """VM -> (plan, actions in journal order) recorded under any of `revisions`."""
        merged: dict[str, tuple[str, list[tuple[int, dict[str, Any]]]]] = {}
        for revision in revisions:
            for vm, (plan, actions) in self.actions.get(revision, {}).items():
                merged.setdefault(vm, (plan, []))[1].extend(actions)
        return {
            vm: (plan, [a for _, a in sorted(actions, key=lambda pair: pair[0])])
            for vm, (plan, actions) in merged.items()
        }

    def convergences_under(self, revisions: list[str]) -> dict[str, datetime]:
        """VM -> the first time it converged under any of `revisions`."""
        first: dict[str, datetime] = {}
        for revision in revisions:
            for vm, at in self.converged.get(revision, {}).items():
                if vm not in first or at < first[vm]:
                    first[vm] = at
        return first


def _action_json(e: journal.Entry) -> dict[str, Any]:
    return {
        "operation": str(e.operation),
        "targetSite": e.target_site,
        "direction": e.direction,
        "startedAt": _iso(e.started_at),
        "finishedAt": _iso(e.finished_at),
        "result": e.result,
        "error": e.error,
        "dataLossSeconds": e.data_loss_seconds,
        "jobId": e.job_id,
    }


def _acted_lines(entry: AuditEntry) -> Iterator[str]:
    """The VM's actions, each retry of it in its place among them (before what it started)."""
    pending = sorted(entry.interventions, key=lambda i: i.at)
    for action in entry.actions:
        started = action["startedAt"] or action["finishedAt"]
        while pending and started is not None and datetime.fromisoformat(started) > pending[0].at:
            yield from pending.pop(0).lines(entry.vm)
        yield _action_text(action)
    for record in pending:
        yield from record.lines(entry.vm)


def _intervention_json(record: intervention.Intervention, vm: str | None) -> dict[str, Any]:
    """A break-glass record as an audit entry shows it: a retry only as it cleared `vm`."""
    doc: dict[str, Any] = {"kind": record.kind, "by": record.by, "host": record.host}
    doc["at"] = record.at.isoformat()
    if record.kind == intervention.RETRY:
        spent = next((dict(s) for _, name, s in record.vms if name == vm), {})
        doc["clearedAttempts"] = spent
    else:
        doc["detail"] = record.detail
    return doc


def _action_text(action: Mapping[str, Any]) -> str:
    target = f" to {action['targetSite']}" if action["targetSite"] else ""
    parts = [f"{action['operation']}{target}: {action['result']}"]
    if action["startedAt"] or action["finishedAt"]:
        parts.append(f"{action['startedAt'] or '?'} .. {action['finishedAt'] or 'running'}")
    if action["jobId"]:
        parts.append(f"job {action['jobId']}")
    if action["dataLossSeconds"] is not None:
        parts.append(f"data loss {action['dataLossSeconds']:g} s")
    if action["error"]:
        parts.append(f"error: {action['error']}")
    return ", ".join(parts)


def _signature_text(found: signature.Signature) -> str:
    if found.status == "N":
        return "signature: none"
    meaning = signature.MEANING.get(found.status, found.status)
    by = f" by {found.signer}" if found.signer else ""
    key = f", key {found.key}" if found.key else ""
    return f"signature: {meaning}{by}{key}"


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
