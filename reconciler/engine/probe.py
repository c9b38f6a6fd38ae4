"""A drill's checks: TCP or HTTP probes of a test copy, each within its timeout.

Called by `engine.drill` once every test copy of a drill runs, with the
address the fabric reports for the copy (`ObservedVM.test_address`; the
simulator's is the loopback). A probe never raises: what it saw is the
result's one line.
"""

from __future__ import annotations

import http.client
import socket

from reconciler.core import plan, state
from reconciler.core.desired import DrillCheck


def run_check(check: DrillCheck, vm: state.ObservedVM | None) -> plan.CheckResult:
    """Probe `vm`'s test copy as `check` says, within its timeout; what it saw, in a line."""
    address = None if vm is None else vm.test_address
    if address is None:
        return plan.CheckResult(check.text, False, "the fabric reports no test copy address")
    try:
        if check.http_path is None:
            with socket.create_connection((address, check.port), timeout=check.timeout_seconds):
                return plan.CheckResult(check.text, True, f"connected to {address}:{check.port}")
        conn = http.client.HTTPConnection(address, check.port, timeout=check.timeout_seconds)
        try:
            conn.request("GET", check.http_path)
            status = conn.getresponse().status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return plan.CheckResult(check.text, False, f"{address}:{check.port}: {exc}")
    ok = 200 <= status < 400
    return plan.CheckResult(check.text, ok, f"GET {check.http_path} answered {status}")
