"""The ASR recovery plans drctl keeps: `drctl-<plan>`, written and deleted by this drctl only.

`asr.provider` moves a whole grouped plan through its recovery plan
(`start_plan`); this module keeps that recovery plan: created with the plan's
groups as Boot groups in boot order, updated only when they differ, never
while one of its jobs runs, and deleted when the plan leaves the spec
(`retire`). Ownership is recorded in the fabric's data dir, in the state dir
(`recovery-plans.json`, per vault), before the recovery plan is created: this
drctl changes or deletes only a recovery plan it wrote itself, so that an
operator's own plan of that name, or another drctl's on the same vault, is
never changed or deleted (one whose groups already match is used as it is:
a standby drctl takes over a plan its peer wrote). It reaches ASR only
through `asr.client`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import errors
from reconciler.core.state import Operation
from reconciler.fabric import base
from reconciler.fabric.asr import reading
from reconciler.fabric.asr import settings as asr_settings

if TYPE_CHECKING:
    from reconciler.fabric.asr.client import ArmClient

PREFIX = "drctl-"  # the ASR recovery plan of drctl plan P is drctl-P
RECORD = "recovery-plans.json"
# The plan-level POST of each operation a whole plan makes through its recovery plan.
VERBS = {
    Operation.PLANNED_FAILOVER: "planned_failover",
    Operation.UNPLANNED_FAILOVER: "unplanned_failover",
    Operation.COMMIT: "failover_commit",
    Operation.REVERSE_REPLICATE: "reprotect",
    # A drill of the plan (ReplicationRecoveryPlans_TestFailover.json, ..._TestFailoverCleanup):
    # the recovery plan boots the test copies by group itself.
    Operation.TEST_FAILOVER: "test_failover",
    Operation.TEST_FAILOVER_CLEANUP: "test_failover_cleanup",
}
_BUSY = frozenset({"InProgress", "NotStarted"})
RETIRE_EVERY = 30.0  # seconds between two tries to delete one recovery plan left in place


def name_of(plan: str) -> str:
    return f"{PREFIX}{plan}"


class RecoveryPlans:
    """This drctl's recovery plans in one vault, and its record of those it wrote."""

    def __init__(
        self, settings: asr_settings.AsrSettings, arm: ArmClient, data_dir: Path | None
    ) -> None:
        self._settings = settings
        self._arm = arm
        self._record = None if data_dir is None else data_dir / RECORD
        s = settings
        self.vault_id = (
            f"/Subscriptions/{s.subscription_id}/resourceGroups/{s.resource_group}/providers/"
            f"Microsoft.RecoveryServices/vaults/{s.vault}"
        )
        self._written: dict[str, str] | None = None  # recovery plan -> when drctl wrote it
        self._next_try: dict[str, float] = {}  # recovery plan left in place -> not before

    # --- keeping one ---------------------------------------------------------------

    def ensure(self, name: str, groups: list[list[reading.Item]], at: datetime) -> None:
        """Create `name`, or update it to mirror `groups`; refused while its job runs,
        and for a recovery plan of that name this drctl did not write."""
        wanted = [[item.ref.name for item in group] for group in groups]
        found = self._arm.get_plan(name)
        if found is not None and boot_groups(found) == wanted:
            return
        if found is not None and name not in self.written():
            raise errors.TerminalError(
                f"vault {self._settings.vault} has a recovery plan {name} that this drctl did "
                f"not write (an operator's, or another drctl's), with other groups than the "
                f"plan's: drctl never changes or deletes it; rename or delete it in the vault, "
                "or give it the plan's groups"
            )
        if found is not None and _busy(found):
            raise errors.RejectedError(
                f"recovery plan {name} differs from the plan's groups but one of its jobs runs: "
                "drctl changes it once that job has ended"
            )
        if found is None:
            self._remember(name, at)  # before the write: a crash leaves it recorded, not lost
        body: dict[str, Any] = {"properties": {"groups": []}}
        for group in groups:
            refs = [
                {
                    "id": f"{self.vault_id}/replicationFabrics/{i.ref.fabric}/replicationProtection"
                    f"Containers/{i.ref.container}/replicationProtectedItems/{i.ref.name}",
                    "virtualMachineId": i.ref.name,
                }
                for i in group
            ]
            body["properties"]["groups"].append(
                {"groupType": "Boot", "replicationProtectedItems": refs}
            )
        first = groups[0][0] if groups and groups[0] else None
        if found is None and first is not None:
            body["properties"].update(
                primaryFabricId=f"{self.vault_id}/replicationFabrics/{first.ref.fabric}",
                recoveryFabricId=str(first.raw.get("recoveryFabricId") or ""),
                failoverDeploymentModel="NotApplicable",
            )
        self._arm.write_plan(name, body, create=found is None)

    def running_job(self, name: str) -> str | None:
        """The name of the job that runs on recovery plan `name` now, None when idle."""
        found = self._arm.get_plan(name)
        if found is None or not _busy(found):
            return None
        scenario = (found.get("properties") or {}).get("currentScenario") or {}
        job = str(scenario.get("jobId") or "").rsplit("/", 1)[-1]
        return job or None

    # --- retiring ------------------------------------------------------------------

    def retire(self, keep: Collection[str], now: float) -> list[base.Retired]:
        """Delete the recovery plans this drctl wrote whose drctl plan is not in `keep`.

        Never one whose job runs, never one this drctl did not write. One left
        in place is tried again `RETIRE_EVERY` seconds later (`now`: the
        clock's timestamp). Each try is said, deleted or not; nothing to
        retire costs no request.
        """
        done = []
        for name in sorted(self.written()):
            plan = name.removeprefix(PREFIX)
            if plan in keep or now < self._next_try.get(name, 0.0):
                continue
            self._next_try[name] = now + RETIRE_EVERY
            try:
                found = self._arm.get_plan(name)
                if found is None:
                    self._forget(name)
                    done.append(base.Retired(plan, name, True, "already gone from the vault"))
                    continue
                if _busy(found):
                    done.append(
                        base.Retired(
                            plan,
                            name,
                            False,
                            f"its job {self.running_job(name) or '?'} runs: deleted once it ends",
                        )
                    )
                    continue
                self._arm.delete_plan(name)
            except errors.ProviderError as exc:
                done.append(base.Retired(plan, name, False, f"{exc}; tried again on a later pass"))
                continue
            self._forget(name)
            self._next_try.pop(name, None)
            done.append(
                base.Retired(plan, name, True, f"deleted from vault {self._settings.vault}")
            )
        return done

    # --- the record ----------------------------------------------------------------

    def written(self) -> dict[str, str]:
        """The recovery plans of this vault this drctl wrote, with when."""
        if self._written is None:
            self._written = dict(self._read().get(self.vault_id, {}))
        return self._written

    def _remember(self, name: str, at: datetime) -> None:
        self.written()[name] = at.isoformat()
        self._save()

    def _forget(self, name: str) -> None:
        if self.written().pop(name, None) is not None:
            self._save()

    def _read(self) -> dict[str, dict[str, str]]:
        if self._record is None:
            return {}
        try:
            found = json.loads(self._record.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise errors.TerminalError(
                f"drctl's record of the recovery plans it wrote ({self._record}) cannot be "
                f"read: {exc}; drctl writes and deletes none until it can"
            ) from exc
        return found if isinstance(found, dict) else {}

    def _save(self) -> None:
        if self._record is None:
            return
        every = self._read()
        every[self.vault_id] = dict(sorted(self.written().items()))
        part = self._record.with_name(f".{RECORD}.{os.getpid()}")
        try:
            self._record.parent.mkdir(parents=True, exist_ok=True)
            part.write_text(json.dumps(every, indent=1, sort_keys=True) + "\n")
            part.replace(self._record)
        except OSError as exc:
            raise errors.TransientError(
                f"drctl cannot record the recovery plans it writes in {self._record}: {exc}; "
                "it writes none until it can"
            ) from exc


def boot_groups(plan: dict[str, Any]) -> list[list[str]]:
    """The item names of a recovery plan's Boot groups, in boot order."""
    groups = (plan.get("properties") or {}).get("groups") or []
    return [
        [
            str(ref.get("id") or "").rsplit("/", 1)[-1]
            for ref in g.get("replicationProtectedItems") or []
        ]
        for g in groups
        if g.get("groupType") == "Boot"
    ]


def _busy(plan: dict[str, Any]) -> bool:
    return (plan.get("properties") or {}).get("currentScenarioStatus") in _BUSY
