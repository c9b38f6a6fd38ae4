"""deploy/container/Dockerfile, linted: no container engine runs here (nor hadolint,
which Debian does not package), so the test reads the instructions and checks the
rules that matter, and runs its HEALTHCHECK and CMD against a real drctl."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from e2e.harness import Site

from reconciler.cli import main

ROOT = Path(__file__).parent.parent.parent
DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"
SECRETISH = re.compile(r"(?i)(secret|password|passwd|token|credential|api_?key)")

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
            pending = ""
    assert not pending, "the Dockerfile ends in a continuation"
    return found


def final_stage() -> list[Instruction]:
    every = instructions()
    last_from = max(i for i, (word, _) in enumerate(every) if word == "FROM")
    return every[last_from:]


def exec_form(word: str) -> list[str]:
    """The JSON array of the final stage's `word` (CMD, ENTRYPOINT); fails on shell form."""
    (args,) = [rest for w, rest in final_stage() if w == word]
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def test_every_base_is_a_pinned_python_3_11_slim() -> None:
    bases = [rest.split()[0] for word, rest in instructions() if word == "FROM"]
    assert bases
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base


def test_it_runs_as_a_non_root_user_set_before_its_command() -> None:
    stage = final_stage()
    users = [(i, rest) for i, (word, rest) in enumerate(stage) if word == "USER"]
    assert users, "no USER: the container would run as root"
    last, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    for word in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
        assert max(i for i, (w, _) in enumerate(stage) if w == word) > last, word


def test_no_secret_in_env_or_args_no_remote_add_and_no_package_caches() -> None:
    for word, rest in instructions():
        if word in {"ENV", "ARG"}:
            assert not SECRETISH.search(rest), f"{word} {rest}"
        assert word != "ADD", f"ADD {rest}: COPY a file, or fetch it in a RUN you can check"
        if word == "RUN":
            if "pip install" in rest:
                assert "--no-cache-dir" in rest, rest
            if "apt-get install" in rest:
                assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest


def test_the_command_is_drctl_run_in_exec_form_serving_the_exposed_port() -> None:
    command = exec_form("ENTRYPOINT") + exec_form("CMD")
    assert command[:2] == ["drctl", "run"]
    args = main.build_parser().parse_args(command[1:])  # drctl accepts it as it is
    port = args.metrics_addr.rpartition(":")[2]
    (exposed,) = [rest for word, rest in final_stage() if word == "EXPOSE"]
    assert exposed == port
    env = " ".join(rest for word, rest in final_stage() if word == "ENV")
    assert "DRCTL_STATE_DIR=/var/lib/drctl" in env
    assert ("VOLUME", '["/var/lib/drctl"]') in final_stage()


def test_the_extras_built_by_default_are_the_asr_and_hyperv_providers() -> None:
    (extras,) = [rest for word, rest in instructions() if word == "ARG" and "EXTRAS" in rest]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    chosen = extras.partition("=")[2].split(",")
    assert chosen == ["asr", "hyperv"] and set(chosen) <= set(declared)


def healthcheck(port: int) -> list[str]:
    """The HEALTHCHECK's command, run by this Python, at `port` instead of the image's."""
    (rest,) = [rest for word, rest in final_stage() if word == "HEALTHCHECK"]
    argv = json.loads(rest[rest.index("CMD") + 3 :])
    assert argv[0] == "python"
    (exposed,) = [r for word, r in final_stage() if word == "EXPOSE"]
    return [sys.executable, *[a.replace(f":{exposed}/", f":{port}/") for a in argv[1:]]]


@pytest.mark.e2e
def test_the_healthcheck_passes_on_a_live_daemon_and_fails_without_one(site: Site) -> None:
    assert "/healthz" in " ".join(healthcheck(site.metrics_port))
    down = subprocess.run(healthcheck(site.metrics_port), capture_output=True, check=False)
    assert down.returncode != 0
    site.start()
    up = subprocess.run(healthcheck(site.metrics_port), capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stderr
