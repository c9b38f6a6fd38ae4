"""The fabric-specific parts of the end-to-end tests shared by providers (test_shared.py).

A `Driver` holds one fabric with the 3-tier application at ams, a spec
directory and a state dir, and runs every drctl command as a real
subprocess. What differs between fabrics is behind its methods: the spec
files that declare the fabric, how a site goes dark and comes back, how a job
fails, how an operator fails a VM over by hand (a split brain), and what the
fabric saw drctl start (`started`: the simulator's jobs that carry an intent
id, the ARM test server's accepted POSTs), so that "nothing twice" is the
fabric's own evidence, never drctl's journal.

- `SimDriver`: the embedded simulator in the state dir, driven through
  `drctl fabric ...` as an operator would.
- `AsrDriver`: the ARM test server of tests/fabric/asr in this process
  (HTTPS on 127.0.0.1), reached by drctl through the real SDK,
  AzureCliCredential (the stand-in `az`) and TLS through REQUESTS_CA_BUNDLE.
  ASR cannot stop VMs, reports no power, and moves a grouped plan through
  its recovery plan `drctl-finance`: `stops_vms` is False.
- `HyperVDriver`: the emulated Hyper-V hosts of tests/fabric/hyperv behind a
  stand-in `pwsh` (tests/fabric/hyperv/pwsh.py), reached by drctl's local
  runner (`transport: {local: {executable: pwsh}}`). A planned failover
  includes the reverse replication (nothing to commit or reprotect after
  it), a stale copy is turned off (`Stop-VM -TurnOff`), and there are no
  service-side jobs: what drctl started is read from the cmdlets the hosts
  ran (`planned_reverses` is True).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e.harness import daemon_command, free_port, metrics_text, wait_until
from fabric.asr import harness
from fabric.asr import vault as v
from fabric.hyperv import harness as hv_harness
from fabric.hyperv import pwsh

from reconciler.core.state import Operation
from reconciler.fabric import base
from reconciler.fabric.sim import provider as sim
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.fabric.sim.timing import Timings
from reconciler.kits.clock import WallClock

VMS = ("sql01", "app01", "app02", "web01", "web02")
# Sub-second jobs, as the simulator's end-to-end tests use (a test that must catch a
# job in flight makes its failover longer).
TIMINGS = Timings(
    planned_failover=0.3,
    unplanned_failover=0.4,
    commit=0.2,
    reverse_replicate=0.3,
    initial_replication=0.6,
    stop_vm=0.2,
    test_failover=0.2,
    test_failover_cleanup=0.1,
    replication_interval=1.0,
)
# What one call asks of the fabric: (what it names: a VM or a recovery plan, operation).
Started = tuple[str, str]


class Driver:
    """One fabric under drctl; the subclasses say how each fabric does what differs."""

    name = ""
    stops_vms = True  # False: a grouped plan moves through the fabric's own plan (ASR)
    reports_power = True  # False: a copy the fabric keeps active reads Unknown (ASR)
    planned_reverses = False  # True: a planned failover reverses replication itself (Hyper-V)
    pace = 1.0  # how much longer than the simulator a step takes (a process per cmdlet: Hyper-V)

    def __init__(self, root: Path, timings: Timings = TIMINGS) -> None:
        self.root = root
        self.timings = timings
        self.specs = root / "specs"
        self.specs.mkdir(parents=True)
        self.state = root / "state"
        self.log = root / "daemon.log"
        self.printed: list[str] = []  # every stdout and stderr drctl wrote
        self.daemon: subprocess.Popen[str] | None = None
        self.metrics_port = free_port()
        self.metrics_seen: list[str] = []

    # --- what differs ----------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def site_down(self, site: str) -> None:
        raise NotImplementedError

    def site_up(self, site: str) -> None:
        raise NotImplementedError

    def fail_next(self, vm: str, operation: Operation, times: int = 1) -> None:
        raise NotImplementedError

    def failover_by_hand(self, vm: str, site: str) -> None:
        """An operator's unplanned failover in the portal, to its end: the source is not
        shut down."""
        raise NotImplementedError

    def started(self) -> list[Started]:
        raise NotImplementedError

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.kill()
            self.daemon.wait()
            self.daemon = None

    # --- drctl, the same on every fabric ---------------------------------------------

    def drctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--state-dir", str(self.state)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(),
        )
        self.printed.extend((done.stdout, done.stderr))
        return done

    def want(self, text: str) -> None:
        (self.specs / "finance.yaml").write_text(text)

    def seconds(self, on_sim: float) -> str:
        """A `--timeout` that lets drctl do on this fabric what it does in `on_sim` s on the
        simulator."""
        return f"{on_sim * self.pace:g}"

    def apply(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.drctl(
            "apply", str(self.specs), "--poll-interval", "0.05", "--retry-backoff", "0.1", *extra
        )

    def status(self) -> dict[str, Any]:
        done = self.drctl("status", str(self.specs), "--output", "json")
        assert done.returncode == 0, done.stdout + done.stderr
        status: dict[str, Any] = json.loads(done.stdout)
        return status

    def vms(self) -> dict[str, dict[str, Any]]:
        return {vm["name"]: vm for vm in self.status()["vms"]}

    def converged_at(self, site: str) -> bool:
        status = self.status()
        return bool(status["converged"]) and all(
            vm["observed"]["activeSite"] == site for vm in status["vms"]
        )

    def daemon_converged_at(self, site: str) -> bool:
        """What the daemon's /metrics says: the plan converged, every VM active at `site`
        (cheaper than a `drctl status` for a test that polls)."""
        lines = self.metrics_text().splitlines()
        at_site = [
            line
            for line in lines
            if line.startswith("drctl_vm_info{")
            and f'active_site="{site}"' in line
            and 'phase="Converged"' in line
            and line.endswith(" 1.0")
        ]
        return 'drctl_plan_converged{plan="finance"} 1.0' in lines and len(at_site) == len(VMS)

    def start_daemon(self, *extra: str) -> None:
        with self.log.open("a") as log:
            self.daemon = subprocess.Popen(
                daemon_command(self.specs, self.state, self.metrics_port, *extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env=self.env(),
            )

    def stop_daemon(self, sig: int = signal.SIGTERM) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(sig)
        code = self.daemon.wait(timeout=15)
        self.daemon = None
        return code

    def metrics_text(self) -> str:
        return metrics_text(self.metrics_port)

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
        return wait_until(what, check, timeout)


class SimDriver(Driver):
    name = "sim"

    def __init__(self, root: Path, timings: Timings = TIMINGS) -> None:
        super().__init__(root, timings)
        t = timings
        inventory = {
            "sites": ["ams", "rtm"],
            "vms": [{"name": n, "activeSite": "ams", "replication": "ams->rtm"} for n in VMS],
            "timings": {
                "plannedFailover": t.planned_failover,
                "unplannedFailover": t.unplanned_failover,
                "commit": t.commit,
                "reverseReplicate": t.reverse_replicate,
                "initialReplication": t.initial_replication,
                "stopVM": t.stop_vm,
                "testFailover": t.test_failover,
                "testFailoverCleanup": t.test_failover_cleanup,
                "replicationInterval": t.replication_interval,
            },
        }
        (root / "inventory.yaml").write_text(json.dumps(inventory))
        self._fabric("init", str(root / "inventory.yaml"))

    def _fabric(self, *args: str) -> None:
        done = self.drctl("fabric", *args)
        assert done.returncode == 0, done.stdout + done.stderr

    def site_down(self, site: str) -> None:
        self._fabric("site-down", site)

    def site_up(self, site: str) -> None:
        self._fabric("site-up", site)

    def fail_next(self, vm: str, operation: Operation, times: int = 1) -> None:
        self._fabric("fail", vm, str(operation), "--times", str(times))

    def failover_by_hand(self, vm: str, site: str) -> None:
        self._fabric("failover", vm, site, "--unplanned")
        with sim.SimFabric(self.state, WallClock()) as fabric:
            self.wait(
                f"the failover of {vm} by hand to end",
                lambda: not any(j.running for j in fabric.list_jobs()),
            )

    def started(self) -> list[Started]:
        # The fabric's own job list, read as kill.py reads it: a job carrying an intent id
        # is one drctl started (an operator's, by hand, carries none).
        with sim.SimFabric(self.state, WallClock()) as fabric:
            return [(j.vm, str(j.operation)) for j in fabric.list_jobs() if j.intent_id]


class AsrDriver(Driver):
    name = "asr"
    stops_vms = False
    reports_power = False

    def __init__(self, root: Path, timings: Timings = TIMINGS) -> None:
        super().__init__(root, timings)
        inventory = Inventory(
            ("ams", "rtm"), tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in VMS), timings
        )
        # The server's Retry-After of 0: drctl polls jobs at its own pace.
        self.built = harness.open_fabric(root / "server", WallClock(), inventory)
        self.vault = self.built.vault
        self.server = self.built.server
        s = self.built.settings
        (self.specs / "contoso.yaml").write_text(
            "apiVersion: drctl/v1\nkind: Fabric\nmetadata: {name: contoso}\nspec:\n"
            f"  asr:\n    subscriptionId: {s.subscription_id}\n"
            f"    resourceGroup: {s.resource_group}\n    vault: {s.vault}\n"
            f"    endpoint: {s.endpoint}\n    credential: cli\n"
            # Loopback and sub-second jobs: ARM's rates would only slow the test down.
            "    rates: {readsBurst: 10000, readsPerSecond: 10000, writesBurst: 10000, "
            "writesPerSecond: 10000}\n"
            "  sites:\n"
            + "".join(f"    {site}: {{protectionContainer: {c}}}\n" for site, c in s.sites.items())
        )

    def env(self) -> dict[str, str]:
        # The stand-in az is first on PATH (identity.install, in this process's environ);
        # the server's throwaway CA is trusted as an operator trusts a private one.
        return {**os.environ, "REQUESTS_CA_BUNDLE": str(self.server.ca_path)}

    def site_down(self, site: str) -> None:
        self.built.controls.site_down(site)

    def site_up(self, site: str) -> None:
        self.built.controls.site_up(site)

    def fail_next(self, vm: str, operation: Operation, times: int = 1) -> None:
        self.built.controls.inject_failure(vm, operation, times)

    def failover_by_hand(self, vm: str, site: str) -> None:
        self.built.controls.start_by_hand(base.Request(vm, Operation.UNPLANNED_FAILOVER, site))

        def ended() -> bool:
            with self.vault.lock:
                self.vault.advance()
                return self.vault.by_friendly(vm).job is None

        self.wait(f"the failover of {vm} by hand to end", ended)

    def turn_off_by_hand(self, vm: str, site: str) -> None:
        """An operator shuts the copy of `vm` at `site` down in Hyper-V Manager (ASR never
        hears of it: it reports no power)."""
        with self.vault.lock:
            item = self.vault.by_friendly(vm)
            item.state = dataclasses.replace(item.state, running=item.state.running - {site})

    def started(self) -> list[Started]:
        found = []
        for seen in self.server.seen("POST"):
            if seen.status >= 300:
                continue  # refused: nothing started
            path = seen.path.split("?")[0].split("/")
            action = path[-1].lower()
            op = (v.PLAN_ACTIONS if "replicationRecoveryPlans" in path else v.ACTIONS)[action]
            target = path[-2]
            item = self.vault.items.get(target)
            found.append((target if item is None else item.friendly, str(op)))
        return found

    def close(self) -> None:
        super().close()
        self.built.close()


# What each cmdlet the hosts ran says drctl started (a planned failover's Start-VMFailover on
# the replica and -Reverse are its own later steps; its Stop-VM, when the VM still ran, counts
# as a StopVM).
HV_STARTS = {
    "prepare": Operation.PLANNED_FAILOVER,
    "complete": Operation.COMMIT,
    "as-replica": Operation.REVERSE_REPLICATE,
    "stop": Operation.STOP_VM,
    "resync": Operation.RESYNC,
    "test": Operation.TEST_FAILOVER,
}


class HyperVDriver(Driver):
    name = "hyperv"
    planned_reverses = True
    pace = 2.0

    def __init__(self, root: Path, timings: Timings = TIMINGS) -> None:
        super().__init__(root, timings)
        inventory = Inventory(
            ("ams", "rtm"), tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in VMS), timings
        )
        self.hosts = pwsh.PwshServer(hv_harness.state_of(inventory))
        hv_harness.populate(self.hosts.emulator, inventory)
        (self.specs / "hv.yaml").write_text(
            "apiVersion: drctl/v1\nkind: Fabric\nmetadata: {name: hv}\nspec:\n"
            "  hyperv:\n    credential: {kerberos: {}}\n"
            "    transport: {local: {executable: pwsh}}\n"
            "  sites:\n"
            + "".join(f"    {s}: {{hosts: [{hv_harness.host_of(s)}]}}\n" for s in ("ams", "rtm"))
        )

    def env(self) -> dict[str, str]:
        return self.hosts.env()

    def site_down(self, site: str) -> None:
        with self.hosts.lock:
            self.hosts.controls.site_down(site)

    def site_up(self, site: str) -> None:
        with self.hosts.lock:
            self.hosts.controls.site_up(site)

    def fail_next(self, vm: str, operation: Operation, times: int = 1) -> None:
        # A planned failover fails at the replica's Start-VMFailover, after the source was
        # shut down and prepared: drctl reverts its own -Prepare (Stop-VMFailover).
        with self.hosts.lock:
            self.hosts.controls.inject_failure(
                vm, operation, times, after_shutdown=operation is Operation.PLANNED_FAILOVER
            )

    def failover_by_hand(self, vm: str, site: str) -> None:
        host = hv_harness.host_of(site)
        for line in (
            f"Start-VMFailover -VMName '{vm}' -Confirm:$false",
            f"Start-VM -Name '{vm}'",
        ):
            result = self.hosts.by_hand(host, line)
            assert not result.errors, result.errors

    def started(self) -> list[Started]:
        found = []
        for i, call in enumerate(self.hosts.calls):
            op = HV_STARTS.get(call.command)
            if call.command == "failover":
                before = [c for c in self.hosts.calls[:i] if c.vm == call.vm]
                if not before or before[-1].command != "prepare":
                    op = Operation.UNPLANNED_FAILOVER
            if op is not None:
                found.append((call.vm, str(op)))
        return found

    def close(self) -> None:
        super().close()
        self.hosts.close()
        assert self.hosts.refused == [], self.hosts.refused  # the emulator knew every script


DRIVERS: dict[str, type[Driver]] = {"sim": SimDriver, "asr": AsrDriver, "hyperv": HyperVDriver}
