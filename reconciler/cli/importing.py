"""`drctl import`: write specs that match a fabric as it is now (issue 15, a contract).

    drctl import --fabric NAME [--plan PLAN] [--vms GLOB] [--from-recovery-plans]
                 [--output DIR] [--specs DIR]

The fabric is one a `kind: Fabric` document of the spec directory declares
(`--specs DIR`, by default the `--output` directory), or the embedded
simulator of the state dir (`--fabric embedded`, when no Fabric of that name
is declared). What the plans hold is `ui.imported`'s; this module opens the
fabric, reads the specs already there (their VMs are not imported again),
and writes one file per plan into DIR, or prints them. It never overwrites a
file: an existing one is a refusal (exit 2) and nothing is written. Called
by `cli.main`'s parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.cli import fabric as fabric_cli
from reconciler.cli import options
from reconciler.core.desired import EMBEDDED_FABRIC, DesiredState
from reconciler.gitops import specdir

_NAMED = 10  # VMs named in one line of what was left out


def add_command(commands: Any) -> None:
    """Register `drctl import`."""
    cmd = commands.add_parser(
        "import",
        help="write specs that match a fabric as it is now: drctl plan then proposes nothing",
    )
    cmd.add_argument(
        "--fabric",
        type=fabric_cli.fabric_name,
        required=True,
        metavar="NAME",
        help="a fabric a Fabric document of the specs declares, or 'embedded' (the "
        "embedded simulator of the state dir)",
    )
    cmd.add_argument(
        "--plan",
        metavar="PLAN",
        help="the plan of the VMs (with --from-recovery-plans: of those in no recovery plan); "
        "default: the fabric's name",
    )
    cmd.add_argument("--vms", metavar="GLOB", help="only the VMs whose name matches GLOB")
    cmd.add_argument(
        "--from-recovery-plans",
        action="store_true",
        help="ASR: a plan per recovery plan of the vault, its groups in boot order",
    )
    cmd.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="write a file per plan into DIR (never over an existing file); default: print them",
    )
    cmd.add_argument(
        "--specs",
        type=Path,
        metavar="DIR",
        help="the spec directory that declares the fabric, whose VMs already in a plan are "
        "not imported again (default: the --output DIR; without either, only "
        "--fabric embedded)",
    )
    options.state_dir_arg(cmd)
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from reconciler.engine import fabrics, journal
    from reconciler.engine import state_dir as layout
    from reconciler.kits import clock
    from reconciler.ui import imported

    specs_dir: Path | None = args.specs or args.output
    desired, existing = _read_specs(specs_dir)
    declared = desired.fabric(args.fabric) is not None
    _check_fabric(args.fabric, declared, desired, specs_dir)
    wall = clock.WallClock()
    history = options.shared_journal(args.state_dir)
    if history is None and layout.journal_path(args.state_dir).exists():
        history = journal.Journal(args.state_dir, writer=False)  # read-only: creates nothing
    with fabrics.Fabrics(args.state_dir, wall) as opened:
        opened.use(desired)
        if history is not None:
            opened.keep_steps(history, writable=False)  # a Hyper-V job's steps
        observed = opened.observe([args.fabric])
        fabrics.raise_if_blind(observed)
        plans = _recovery_plans(opened, args) if args.from_recovery_plans else None
    request = imported.Request(
        fabric=args.fabric,
        declared=declared,
        plan=args.plan or args.fabric,
        vms=args.vms,
        recovery_plans=plans,
        managed=frozenset(vm.name for vm in desired.vms()),
        command=_command_text(args),
    )
    root = (specs_dir if args.output is None else args.output) or Path()
    found = imported.import_specs(
        observed[args.fabric],
        request,
        {root / name: text for name, text in existing.items()},
        wall.now(),
        root,
    )
    written, aside = found.counts()
    if found.managed:
        names = ", ".join(found.managed[:_NAMED]) + (", ..." if len(found.managed) > _NAMED else "")
        print(
            f"drctl: {len(found.managed)} VMs already in a plan of the specs are not imported "
            f"again: {names}",
            file=sys.stderr,
        )
    if not written and not aside:
        what = f" matches --vms {args.vms!r}" if args.vms else " is left to import"
        raise errors.UsageError(f"no VM of fabric '{args.fabric}'{what}")
    texts = found.texts()
    if args.output is None:
        sys.stdout.write("---\n".join(texts.values()))
    else:
        _write(args.output, texts)
    for p in found.plans:
        where = p.file if args.output is None else errors.shown_path(str(args.output / p.file))
        left = [a.name for a in p.aside]
        out = "" if not left else f"; left out: {', '.join(left[:_NAMED])}"
        out += ", ..." if len(left) > _NAMED else ""
        print(f"{where}: plan {p.name}, {len(p.entries)} VMs{out}", file=sys.stderr)
    return errors.EXIT_OK


def _read_specs(specs_dir: Path | None) -> tuple[DesiredState, dict[str, str]]:
    """The specs already in `specs_dir` (none when it is None or not made yet), and their texts
    by path relative to it; invalid specs are a refusal (exit 2), as for every command."""
    if specs_dir is None or not specs_dir.exists():
        return DesiredState(plans=()), {}
    desired = specdir.load_specs(specs_dir)
    texts = {}
    for file in specdir.spec_files(specs_dir):
        text = specdir.read_spec(file)
        if isinstance(text, str):  # valid a moment ago
            texts[str(file.relative_to(specs_dir))] = text
    return desired, texts


def _check_fabric(name: str, declared: bool, desired: DesiredState, specs: Path | None) -> None:
    if declared:
        return
    if name != EMBEDDED_FABRIC and specs is not None:
        raise errors.UsageError(
            f"fabric '{name}' is declared by no Fabric document in {specs}: declare it there "
            f"(kind: Fabric), or import the embedded simulator with --fabric {EMBEDDED_FABRIC}"
        )
    if name != EMBEDDED_FABRIC:
        raise errors.UsageError(
            f"fabric '{name}' is declared in a spec directory: give it with --specs DIR (or "
            f"--output DIR), or import the embedded simulator with --fabric {EMBEDDED_FABRIC}"
        )
    if desired.fabrics:
        raise errors.UsageError(
            f"the specs in {specs} declare fabrics ({', '.join(f.name for f in desired.fabrics)}),"
            " so a plan there runs on one of them, never on the embedded simulator: import "
            "with --fabric NAME, or into another --output directory"
        )


def _recovery_plans(opened: Any, args: argparse.Namespace) -> list[Any]:
    from reconciler.fabric import base

    provider = opened.provider(args.fabric)
    if not isinstance(provider, base.ListsRecoveryPlans):
        raise errors.UsageError(
            f"fabric '{args.fabric}' keeps no recovery plans of its own: --from-recovery-plans "
            "reads an ASR vault's; leave it out to import every VM into one plan"
        )
    return provider.recovery_plans()


def _write(directory: Path, texts: dict[str, str]) -> None:
    """Write every file, or none: an existing one is a refusal."""
    taken = [name for name in texts if (directory / name).exists()]
    if taken:
        shown = ", ".join(errors.shown_path(str(directory / n)) for n in taken)
        raise errors.UsageError(
            f"{shown} already exists: drctl import never overwrites a spec; nothing was "
            "written. Move it away, or import into another --output directory (or another "
            "--plan name)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        # "x": a file made since the check above is refused too, never replaced.
        with (directory / name).open("x", encoding="utf-8") as f:
            f.write(text)


def _command_text(args: argparse.Namespace) -> str:
    parts = ["drctl import", f"--fabric {args.fabric}"]
    if args.plan:
        parts.append(f"--plan {args.plan}")
    if args.vms:
        parts.append(f"--vms '{args.vms}'")
    if args.from_recovery_plans:
        parts.append("--from-recovery-plans")
    return " ".join(parts)
