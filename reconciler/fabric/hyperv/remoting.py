"""The WinRM runner: PowerShell Remoting through pypsrp, the only module that imports it.

`PsrpRunner.run` opens a runspace on the host (WinRM over HTTPS on 5986 by
default, certificate validation on, a private CA through `caBundle`),
invokes the script, and polls it against the call's own deadline (pypsrp
has no per-command deadline: jborean93/pypsrp#145); at the deadline the
pipeline is stopped and the call is a TransientError. Every record of the
error stream comes back, since `had_errors` is only set for a terminating
error. pypsrp's errors are translated here: a host that does not answer
is transient, a refused login terminal, a WinRM quota is throttling.
`connection_settings` is pure, so a test checks the settings offline.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import requests
from pypsrp import exceptions as psrp_errors
from pypsrp.complex_objects import PSInvocationState
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from reconciler import errors
from reconciler.fabric.hyperv import settings as hv_settings
from reconciler.fabric.hyperv.runner import ErrorRecord, Result

# WSMan's own wait for one Receive (below requests' read timeout, as pypsrp asks).
OPERATION_TIMEOUT = 20
READ_TIMEOUT = 30
CONNECTION_TIMEOUT = 10
# WSMan faults that mean "too many operations or shells for this user now".
_QUOTA_CODES = frozenset({2150859174, 2150859173, 2144108120})
# ErrorCategory numbers (System.Management.Automation.ErrorCategory) by name.
_CATEGORIES = {
    0: "NotSpecified",
    5: "InvalidArgument",
    6: "InvalidData",
    7: "InvalidOperation",
    8: "InvalidResult",
    9: "InvalidType",
    13: "ObjectNotFound",
    14: "OperationStopped",
    15: "OperationTimeout",
    18: "PermissionDenied",
    19: "ResourceBusy",
    20: "ResourceExists",
    21: "ResourceUnavailable",
}


def connection_settings(
    settings: hv_settings.HyperVSettings, host: str, environ: Mapping[str, str]
) -> dict[str, Any]:
    """The keyword arguments of pypsrp's `WSMan` for `host`, from the declaration."""
    transport = settings.transport
    cred = settings.credential
    validation: bool | str = True
    if transport.insecure_skip_verify:
        validation = False
    elif transport.ca_bundle is not None:
        validation = transport.ca_bundle
    kwargs: dict[str, Any] = {
        "server": host,
        "port": transport.port,
        "ssl": transport.tls,
        "path": "wsman",
        "cert_validation": validation,
        "operation_timeout": OPERATION_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
        "connection_timeout": CONNECTION_TIMEOUT,
    }
    if cred.kind == "certificate":
        kwargs.update(
            auth="certificate", certificate_pem=cred.pem_file, certificate_key_pem=cred.key_file
        )
    elif cred.kind == "kerberos":
        kwargs["auth"] = transport.auth or "kerberos"
    else:
        found = hv_settings.secrets(settings, environ)
        assert found is not None  # noqa: S101 (a password credential names both variables)
        kwargs.update(username=found[0], password=found[1], auth=transport.auth or "negotiate")
    return kwargs


class PsrpRunner:
    """Runs each script in a runspace of its own on the host it names."""

    def __init__(self, settings: hv_settings.HyperVSettings, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = dict(environ)

    def run(self, host: str, script: str, timeout: float) -> Result:
        deadline = time.monotonic() + timeout
        try:
            wsman = WSMan(**connection_settings(self._settings, host, self._environ))
            with wsman, RunspacePool(wsman) as pool:
                ps = PowerShell(pool)
                ps.add_script(script)
                ps.begin_invoke()
                while ps.state == PSInvocationState.RUNNING:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        ps.stop()
                        raise errors.TransientError(
                            f"{host}: the script did not end within {timeout:g} s and was stopped; "
                            "whether its cmdlet took effect is read from the host next"
                        )
                    ps.poll_invoke(timeout=max(1, min(OPERATION_TIMEOUT, int(left))))
                records = tuple(
                    ErrorRecord(
                        str(e.fq_error or ""),
                        _CATEGORIES.get(int(e.category or 0), str(e.category)),
                        str(e),
                    )
                    for e in ps.streams.error
                )
                return Result(
                    tuple(str(o) for o in ps.output),
                    records,
                    tuple(str(w) for w in ps.streams.warning),
                )
        except psrp_errors.AuthenticationError as exc:
            raise errors.TerminalError(
                f"{host} refused drctl's credential ({exc}): check spec.hyperv.credential and "
                "that the account is in Hyper-V Administrators and Remote Management Users"
            ) from exc
        except psrp_errors.WSManFaultError as exc:
            if exc.code in _QUOTA_CODES:
                raise errors.ThrottledError(
                    f"{host}: WinRM quota reached ({exc.reason})", None
                ) from exc
            raise errors.TransientError(f"{host}: WinRM fault {exc.code}: {exc.reason}") from exc
        except (requests.exceptions.RequestException, psrp_errors.WinRMError) as exc:
            raise errors.TransientError(f"{host} does not answer over WinRM: {exc}") from exc

    def close(self) -> None:
        """Nothing is kept open between calls."""
