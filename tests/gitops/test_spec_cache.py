"""The daemon's spec cache gives what a full load gives, after any sequence of edits.

`SpecCache.load` parses only the files whose path or bytes changed and checks
the names across files on counts kept file by file; `specdir.load_specs`
parses everything. After each step of a random sequence of edits, renames,
deletions and additions (valid plans, plans and VMs declared twice, Fabrics,
asrItems, warnings, broken YAML, bytes that are not UTF-8), both must give
the same desired state, or the same problems at the same file:line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.desired import DesiredState
from reconciler.errors import SpecError
from reconciler.gitops import spec_cache, specdir


def plan(name: str, vms: list[str], extra: str = "", fabric: str | None = None) -> str:
    lines = [
        "apiVersion: drctl/v1",
        "kind: RecoveryPlan",
        f"metadata: {{name: {name}}}",
        "spec:",
        "  sites: [ams, rtm]",
        "  defaults: {activeSite: ams, replication: ams->rtm}",
    ]
    if fabric is not None:
        lines.append(f"  fabric: {fabric}")
    lines.append("  vms:")
    lines += [f"    - name: {vm}{extra}" for vm in vms]
    return "\n".join(lines) + "\n"


def fabric(name: str) -> str:
    return (
        f"apiVersion: drctl/v1\nkind: Fabric\nmetadata: {{name: {name}}}\n"
        "spec:\n  simulator: {}\n  sites: {ams: {}, rtm: {}}\n"
    )


plan_names = st.sampled_from(["finance", "hr", "web"])
vm_lists = st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=3)
texts = st.one_of(
    st.builds(plan, plan_names, vm_lists),
    st.builds(plan, plan_names, vm_lists, st.just("\n      allowDataLoss: true")),
    st.builds(plan, plan_names, vm_lists, st.just("\n      asrItem: 0c6e8a3c")),
    st.builds(plan, plan_names, vm_lists, st.just(""), st.sampled_from(["lab", "dr"])),
    st.builds(plan, plan_names, vm_lists, st.just("\n      activeSite: nowhere")),
    st.builds(fabric, st.sampled_from(["lab", "dr"])),
    st.builds(
        lambda a, b: a + "---\n" + b,
        st.builds(plan, plan_names, vm_lists),
        st.builds(fabric, st.sampled_from(["lab", "dr"])),
    ),
    st.just("apiVersion: drctl/v1\nkind: RecoveryPlan\nmetadata: {name: [broken\n"),
    st.just("a: 1\na: 2\n"),
)
file_names = st.sampled_from(["a.yaml", "b.yaml", "sub/c.yaml", "d.yml"])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), file_names, texts),
        st.tuples(st.just("delete"), file_names, st.just("")),
        st.tuples(st.just("rename"), file_names, file_names),
        st.tuples(st.just("bytes"), file_names, st.just("")),
    ),
    min_size=1,
    max_size=12,
)


def apply(specs: Path, step: tuple[str, str, str]) -> None:
    what, name, arg = step
    path = specs / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if what == "write":
        path.write_text(arg)
    elif what == "bytes":
        path.write_bytes(b"apiVersion: drctl/v1\nkind: \xff\n")
    elif path.exists():
        if what == "delete":
            path.unlink()
        else:
            target = specs / arg
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)


def outcome(load: object) -> DesiredState | list[str]:
    """The desired state, or the problems as drctl prints them."""
    try:
        return load()  # type: ignore[operator,no-any-return]
    except SpecError as exc:
        return [str(p) for p in exc.problems]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.lists(st.tuples(file_names, texts), max_size=3), sequence=steps)
def test_after_any_sequence_of_edits_the_cache_loads_what_a_full_load_does(
    tmp_path_factory: pytest.TempPathFactory,
    first: list[tuple[str, str]],
    sequence: list[tuple[str, str, str]],
) -> None:
    specs = tmp_path_factory.mktemp("specs")
    for name, text in first:
        apply(specs, ("write", name, text))
    cache = spec_cache.SpecCache()
    for step in [("write", "a.yaml", plan("finance", ["a"])), *sequence]:
        apply(specs, step)
        full = outcome(lambda: specdir.load_specs(specs))
        assert outcome(lambda: cache.load(specs)) == full, step
        # Loaded again unchanged: nothing parsed, the same answer.
        assert outcome(lambda: cache.load(specs)) == full
        assert cache.parsed == 0


MOVED = "\n      activeSite: rtm\n      replication: rtm->ams"


def test_a_commit_of_one_file_parses_that_file_only(tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"plan-{n}.yaml").write_text(plan(f"p{n}", [f"vm{n}a", f"vm{n}b"]))
    cache = spec_cache.SpecCache()
    before = cache.load(tmp_path)
    assert cache.parsed == 5
    (tmp_path / "plan-2.yaml").write_text(plan("p2", ["vm2a", "vm2b"], MOVED))
    after = cache.load(tmp_path)
    assert cache.parsed == 1
    assert after == specdir.load_specs(tmp_path)
    # The plans of the files left alone are the very objects loaded before.
    assert [a is b for a, b in zip(before.plans, after.plans, strict=True)] == [
        True,
        True,
        False,
        True,
        True,
    ]


def test_an_invalid_edit_is_refused_as_a_full_load_refuses_it_then_its_revert_loads(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(plan("finance", ["a", "b"]))
    (tmp_path / "b.yaml").write_text(plan("hr", ["c"]))
    cache = spec_cache.SpecCache()
    valid = cache.load(tmp_path)
    (tmp_path / "b.yaml").write_text(plan("hr", ["c", "a"]))  # a is in finance already
    with pytest.raises(SpecError) as refused:
        cache.load(tmp_path)
    assert [str(p) for p in refused.value.problems] == [
        (
            f"{tmp_path / 'b.yaml'}:9: VM 'a' is already in plan 'finance' "
            f"({tmp_path / 'a.yaml'}): a VM belongs to one plan, remove one"
        )
    ]
    (tmp_path / "b.yaml").write_text(plan("hr", ["c"]))
    assert cache.load(tmp_path) == valid


def test_the_key_is_gits_blob_id(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"kind: x\n")
    done = subprocess.run(
        ["git", "hash-object", str(tmp_path / "a.yaml")], capture_output=True, check=True
    )
    assert spec_cache.blob_id(b"kind: x\n") == done.stdout.decode().strip()
