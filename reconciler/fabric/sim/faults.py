"""Errors of the fabric's API itself, injected at the Provider seam of the simulator.

A real fabric refuses calls for reasons that have nothing to do with the
VM's lifecycle: a 409 because something changed since the last observation,
a timeout or a 503, a 429 with or without Retry-After, a 404 or a 400 that no
retry cures. `SimFabric.inject_call_error` stores one such fault (in the
store's `call_faults` table, so another process sees it too) and the next
matching call raises it instead of reaching the fabric; `error_for` builds
the exception. Only `fabric.sim.provider` uses this module.
"""

from __future__ import annotations

from typing import Literal, get_args

from reconciler import errors

ErrorKind = Literal["rejected", "transient", "throttled", "terminal"]
KINDS: tuple[str, ...] = get_args(ErrorKind)
# The Provider methods, by name; `*` is whichever is called next.
CALLS = ("observe", "start", "get_job", "list_jobs", "*")


def check_fault(call: str, error: str, times: int, retry_after: float | None) -> None:
    """Refuse a fault that could not be raised as asked (UsageError)."""
    if call not in CALLS:
        raise errors.UsageError(f"no Provider call '{call}': inject into one of {', '.join(CALLS)}")
    if error not in KINDS:
        raise errors.UsageError(f"no error kind '{error}': use one of {', '.join(KINDS)}")
    if times < 1:
        raise errors.UsageError(f"--times must be at least 1, not {times}")
    if retry_after is not None and (error != "throttled" or not retry_after >= 0):
        raise errors.UsageError("only a throttled error has a retry-after, of 0 or more seconds")


def error_for(call: str, error: str, retry_after: float | None) -> errors.ProviderError:
    """The exception a real fabric's client would raise for this fault."""
    said = f"{call}: injected {error} error (SimFabric.inject_call_error)"
    if error == "rejected":
        return errors.RejectedError(f"{said}: the fabric refused the call in the VM's state")
    if error == "transient":
        return errors.TransientError(f"{said}: the fabric did not answer; retry")
    if error == "throttled":
        after = "no Retry-After" if retry_after is None else f"retry after {retry_after:g} s"
        return errors.ThrottledError(f"{said}: too many requests, {after}", retry_after)
    return errors.TerminalError(f"{said}: the fabric cannot do this; retrying will not help")
