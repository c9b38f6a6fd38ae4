"""The fabrics the provider contract and the convergence property run against.

A `Factory` builds one fabric that holds an inventory and runs on a virtual
clock, and returns it as a `FabricUnderTest`: the `Provider` under test plus
its `Controls`, what a test does to a fabric besides calling the Provider
(the WAN, an operator in the portal, the fabric's own API failing). Every
entry of `FACTORIES` runs the whole contract (tests/fabric/test_contract.py)
and the convergence property (tests/engine/test_convergence.py), through the
`make_fabric` fixture of tests/conftest.py. Today that is the simulator; the
ASR and Hyper-V providers add an entry each, against their test servers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, Self

from reconciler.core.state import Health, Job, Observed, Operation
from reconciler.fabric import base
from reconciler.fabric.sim import provider as sim
from reconciler.fabric.sim.inventory import Inventory
from reconciler.kits.clock import VirtualClock

# How a fabric's API refuses a call: RejectedError (409, not in this state),
# TransientError (timeout, 503), ThrottledError (429), TerminalError (400, 404).
ErrorKind = Literal["rejected", "transient", "throttled", "terminal"]


class Controls(Protocol):
    """The fabric-side knobs a contract test needs; the simulator has them as methods."""

    def site_down(self, site: str) -> bool:
        """Disconnect `site` (False if it was down): the WAN or the site itself fails."""
        ...

    def site_up(self, site: str) -> bool:
        """Reconnect `site` (False if it was up)."""
        ...

    def partition(self, site: str) -> bool:
        """Cut drctl off from `site`'s management plane (False if it was): the site goes on,
        its VMs keep running, their power reads Unknown."""
        ...

    def heal(self, site: str) -> bool:
        """End the partition of `site` (False if there was none)."""
        ...

    def inject_failure(
        self, vm: str, operation: Operation, times: int = 1, *, after_shutdown: bool = False
    ) -> None:
        """The next `times` jobs of `operation` on `vm` are accepted, then fail.

        `after_shutdown`: a planned failover fails after it shut the source
        down, leaving no copy running.
        """
        ...

    def suspend_next(self, vm: str, operation: Operation) -> None:
        """The next job of `operation` on `vm` suspends half-way, waiting for a person."""
        ...

    def resume(self, job: str) -> Job:
        """A person does what the suspended `job` waits for; it runs on."""
        ...

    def start_by_hand(self, request: base.Request) -> str:
        """An operator starts `request` in the portal, outside drctl; returns the job id."""
        ...

    def inject_call_error(
        self,
        call: str,
        error: ErrorKind,
        *,
        times: int = 1,
        vm: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next `times` calls of Provider method `call` (`*`: any) raise `error`.

        Such a call changes nothing in the fabric; `vm` narrows a `start`
        fault to one VM, `retry_after` is a throttled error's Retry-After.
        """
        ...

    def move(self, vm: str, site: str) -> None:
        """Someone fails `vm` over to `site` behind drctl's back (the portal, a script)."""
        ...

    def lag(self, vm: str, seconds: float) -> Health:
        """Replication of `vm` ships `seconds` behind (0: caught up)."""
        ...

    def resync_required(self, vm: str, *, manual: bool = False) -> float | None:
        """Replication of `vm` needs a resync; returns in how many seconds it is done.

        `manual`: it stays ResyncRequired until a Resync operation (None).
        """
        ...


@dataclass
class FabricUnderTest:
    """One fabric, its provider and controls; `reopen` is a new provider on the same data."""

    provider: base.Provider
    controls: Controls
    reopen: Callable[[], base.Provider]
    _close: Callable[[], None] = field(repr=False)
    # Whether the fabric reports a VM without replication (ASR lists only protected items).
    reports_unprotected: bool = True
    # Whether a job started outside drctl reports no intent id. ASR keeps every caller's
    # client request id (the portal's too): such a job reports one that is not drctl's.
    foreign_intents_none: bool = True
    # Sites the fabric always reaches, whatever `Controls.site_down` does to them (Azure:
    # when it is down, so is the vault, and the fabric cannot be observed at all).
    always_connected: frozenset[str] = frozenset()
    # Whether a job an operator starts outside drctl is reported at all (Hyper-V has
    # no service-side jobs: an operator's cmdlets leave none).
    foreign_jobs_seen: bool = True
    # Whether throttling carries the fabric's Retry-After (WinRM's quota fault has none).
    retry_after_kept: bool = True
    # Whether list_jobs reads drctl's own journal rather than the fabric (Hyper-V).
    jobs_listed_by_drctl: bool = False

    def close(self) -> None:
        self._close()

    def __enter__(self) -> FabricUnderTest:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


Factory = Callable[[Path, VirtualClock, Inventory], FabricUnderTest]


def simulator(state_dir: Path, clock: VirtualClock, inventory: Inventory) -> FabricUnderTest:
    """The embedded simulator in `state_dir`, as `drctl fabric init` makes it."""
    sim.init_fabric(state_dir, inventory, clock)
    opened = [sim.SimFabric(state_dir, clock)]

    def reopen() -> base.Provider:
        opened.append(sim.SimFabric(state_dir, clock))
        return opened[-1]

    def close() -> None:
        for fabric in opened:
            fabric.close()

    return FabricUnderTest(opened[0], opened[0], reopen, close)


# The site that is Azure in the Hyper-V-to-Azure vault of `asr_azure`.
AZURE_SITE = "rtm"


def asr(state_dir: Path, clock: VirtualClock, inventory: Inventory) -> FabricUnderTest:
    """The ASR provider (the real SDK and AzureCliCredential) against a local ARM test server.

    Its vault holds the replicated VMs of `inventory` between two VMM clouds; a VM
    without replication is no protected item, so ASR does not report it. Jobs are
    polled as the server's Retry-After (0 here) allows: every get_job reaches the server.
    """
    return _asr(state_dir, clock, inventory, azure=None)


def asr_azure(state_dir: Path, clock: VirtualClock, inventory: Inventory) -> FabricUnderTest:
    """The ASR provider against a Hyper-V-to-Azure vault: rtm is Azure (`azure: {}`).

    The same lifecycle model as `asr`, with the HyperVReplicaAzure inputs and shapes.
    Azure is always reachable (ASR reports no connection for it): it never reads
    disconnected.
    """
    return _asr(state_dir, clock, inventory, azure=AZURE_SITE)


def _asr(
    state_dir: Path, clock: VirtualClock, inventory: Inventory, *, azure: str | None
) -> FabricUnderTest:
    from fabric.asr import harness

    built = harness.open_fabric(state_dir, clock, inventory, azure=azure)
    return FabricUnderTest(
        built.open(),
        built.controls,
        built.open,
        built.close,
        reports_unprotected=False,
        foreign_intents_none=False,
        always_connected=frozenset() if azure is None else frozenset({azure}),
    )


def hyperv(state_dir: Path, clock: VirtualClock, inventory: Inventory) -> FabricUnderTest:
    """The Hyper-V provider against the emulated hosts, its steps in a real journal.

    Hyper-V lists a VM without replication as no replicated VM (drctl reports
    only those), an operator's cmdlets leave no job, a WinRM quota says no
    Retry-After, and drctl's own job list is read from its journal, never the hosts.
    """
    from fabric.hyperv import harness

    built = harness.open_fabric(state_dir, clock, inventory)
    return FabricUnderTest(
        built.open(),
        built.controls,
        built.open,
        built.close,
        reports_unprotected=False,
        foreign_jobs_seen=False,
        retry_after_kept=False,
        jobs_listed_by_drctl=True,
    )


FACTORIES: dict[str, Factory] = {
    "sim": simulator,
    "asr": asr,
    "asr-azure": asr_azure,
    "hyperv": hyperv,
}
# The fabrics the convergence property runs on. Not ASR yet: its histories act on
# unreplicated VMs (ASR lists no such item), and ASR reports no power, so the
# planner's rules for Unknown power hold its VMs (WaitingForSite) short of
# Converged; the ASR provider passes the contract (tests/fabric/test_contract.py).
CONVERGING = frozenset({"sim"})


class Delegating:
    """A provider that passes every call to `inner`: a test overrides the one it records or bends.

    Our own Protocol seam, over a real provider (the simulator): the test
    plays what a real fabric's API does to a call (a lost answer, a crash).
    """

    def __init__(self, inner: base.Provider) -> None:
        self.inner = inner

    @property
    def keeps_intent_ids(self) -> bool:
        return self.inner.keeps_intent_ids

    def observe(self) -> Observed:
        return self.inner.observe()

    def start(self, request: base.Request) -> str:
        return self.inner.start(request)

    def get_job(self, job_id: str) -> Job:
        return self.inner.get_job(job_id)

    def list_jobs(self) -> list[Job]:
        return self.inner.list_jobs()

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class WithoutIntentIds(Delegating):
    """A fabric that keeps no intent ids (Hyper-V Replica's jobs carry nothing of the caller's).

    The simulator, whose jobs are reported without the intent id of their
    request: the executor must find an interrupted call's job without it.
    """

    keeps_intent_ids = False

    def observe(self) -> Observed:
        seen = self.inner.observe()
        vms = {
            name: vm if vm.job is None else dataclasses.replace(vm, job=_forget(vm.job))
            for name, vm in seen.vms.items()
        }
        return dataclasses.replace(seen, vms=vms, jobs=tuple(_forget(j) for j in seen.jobs))

    def get_job(self, job_id: str) -> Job:
        return _forget(self.inner.get_job(job_id))

    def list_jobs(self) -> list[Job]:
        return [_forget(j) for j in self.inner.list_jobs()]


def _forget(job: Job) -> Job:
    return dataclasses.replace(job, intent_id=None)
