"""No secret of the ASR provider reaches anything drctl writes or prints (issue 11).

A real `drctl run` (with --git-notes and /metrics) fails a plan over on the ASR
test vault while its token is rotated (a 401, then a fresh token from the
stand-in `az`) and a job fails; then `drctl status`, `plan` and `audit`
look at it. Every token `az` handed out, and every 12-character
piece of one, is looked for in: every stdout and stderr, the daemon's log,
every file of the state dir (the journal's SQLite file and its WAL,
daemon.json, in-force/, anything else), the metrics text, and the git notes.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from e2e import providers, secrets
from e2e.harness import git, three_tier

from reconciler.core.state import Operation

pytestmark = pytest.mark.e2e


def test_no_token_reaches_output_logs_journal_state_metrics_or_notes(tmp_path: Path) -> None:
    driver = providers.AsrDriver(tmp_path)
    tokens = [driver.server.authority.current()]
    try:
        driver.want(three_tier("ams"))
        git(tmp_path, "init", "-q", "-b", "main")
        git(tmp_path, "add", "specs")
        git(tmp_path, "commit", "-qm", "finance at ams")
        driver.start_daemon("--git-notes")
        driver.wait("the daemon to converge at ams", lambda: driver.daemon_converged_at("ams"))
        driver.fail_next("sql01", Operation.PLANNED_FAILOVER)
        tokens.append(driver.server.authority.rotate())  # the daemon's token is now refused
        driver.want(three_tier("rtm"))
        git(tmp_path, "commit", "-qam", "finance to rtm")
        driver.wait("the daemon to converge at rtm", lambda: driver.daemon_converged_at("rtm"), 60)
        metrics = driver.wait("metrics", driver.metrics_text)
        driver.wait(
            "the note on the converged commit",
            lambda: git(tmp_path, "notes", "--ref=drctl", "list"),
        )
        assert driver.stop_daemon(signal.SIGTERM) == 0
        for args in (
            ("status", str(driver.specs), "--output", "json"),
            ("plan", str(driver.specs), "--output", "json"),
            ("audit", str(driver.specs)),
        ):
            done = driver.drctl(*args)
            assert done.returncode == 0, done.stdout + done.stderr
        # The run went through what a leak would hide in: a refused token, a failed job.
        statuses = [r.status for r in driver.server.requests]
        assert 401 in statuses
        log = driver.log.read_text()
        assert "failed" in log
        notes = git(tmp_path, "log", "--notes=drctl", "--format=%H%n%N")
        assert "sql01" in notes
        texts = {
            **{f"printed[{i}]": text.encode() for i, text in enumerate(driver.printed)},
            "daemon log": log.encode(),
            "metrics": metrics.encode(),
            "git notes": notes.encode(),
            **secrets.files_under(driver.state),
        }
        assert len(tokens) == len(set(tokens)) == 2
        assert secrets.leaks(tokens, texts) == []
        # The check itself finds a token, or a piece of one, where there is one.
        assert secrets.leaks(tokens, {"x": f"Bearer {tokens[1][:-3]}".encode()}) != []
    finally:
        driver.close()
