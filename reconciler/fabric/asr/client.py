"""The one module that talks to Azure: the official SDK client, its credential, its errors.

`asr.provider` calls `ArmClient`; nothing else of drctl imports `azure`
(an import-linter contract). Every answer comes back as plain JSON-shaped
dicts, keyed as the REST API and the official examples spell them
(`properties.activeLocation`, ...), and every failure as one of drctl's
errors, chained to the SDK's:

- 429: ThrottledError with the answer's Retry-After (None when it gave none);
  5xx, a timeout or a lost connection: TransientError. The SDK retries
  nothing (`retry_total=0`): a re-sent action POST can start a second job,
  and the executor backs off on drctl's clock without spending an attempt.
- 401: the token is dropped and the call made once more with a fresh one
  (a rotated secret, an expired `az login`); a second 401 is a TerminalError
  that names the credential and what to check. 403: TerminalError naming the
  role the principal needs.
- 400 and 409 on an action: RejectedError with ASR's message, possible
  causes and recommended action; 404: TerminalError.
- A certificate that does not verify: TerminalError saying how to trust a
  private CA (REQUESTS_CA_BUNDLE); verification is never turned off.

Every request passes the provider's token buckets (`bucket.Buckets`) first:
reads and writes, as ARM counts them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import HttpRequest
from azure.identity import (
    AzureCliCredential,
    DefaultAzureCredential,
    EnvironmentCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)
from azure.mgmt.recoveryservicessiterecovery import SiteRecoveryManagementClient

from reconciler import errors
from reconciler.fabric.asr import bucket
from reconciler.fabric.asr.settings import AsrSettings, ItemRef

JSON = dict[str, Any]
T = TypeVar("T")

# The SDK's own loggers say every request at INFO (headers redacted); drctl's
# logs keep to what drctl does.
logging.getLogger("azure").setLevel(logging.WARNING)

_ROLES = (
    "Site Recovery Operator on the vault (failover, commit, reprotect), plus Site Recovery "
    "Contributor for the recovery plans drctl writes"
)


@dataclass(frozen=True)
class Accepted:
    """ASR's answer to an action POST: its status and headers (Location, Azure-AsyncOperation,
    Retry-After), and the body of a 200."""

    status: int
    headers: Mapping[str, str]
    body: JSON | None = None


class _Bucketed(SansIOHTTPPolicy[HttpRequest, Any]):
    """Takes a token from the read or the write bucket before each request goes out."""

    def __init__(self, buckets: bucket.Buckets) -> None:
        self._buckets = buckets

    def on_request(self, request: PipelineRequest[HttpRequest]) -> None:
        self._buckets.take(write=request.http_request.method.upper() != "GET")


class ArmClient:
    """The SiteRecoveryManagementClient of one vault, behind drctl's errors."""

    def __init__(
        self,
        settings: AsrSettings,
        buckets: bucket.Buckets,
        *,
        connection_verify: str | None = None,
    ) -> None:
        self._settings = settings
        self._buckets = buckets
        self._verify = connection_verify
        self._credential: Any = None
        self._sdk: SiteRecoveryManagementClient | None = None

    # --- reads ---------------------------------------------------------------

    def list_items(self) -> list[JSON]:
        """Every protected item of the vault (vault-level list, every page followed)."""
        s = self._settings
        return self._call(
            "list the protected items",
            lambda c: _dicts(c.replication_protected_items.list(s.resource_group, s.vault)),
        )

    def get_item(self, ref: ItemRef) -> JSON:
        s = self._settings
        return self._call(
            f"read protected item {ref.name}",
            lambda c: c.replication_protected_items.get(
                s.resource_group, s.vault, ref.fabric, ref.container, ref.name
            ).as_dict(),
        )

    def list_containers(self) -> list[JSON]:
        s = self._settings
        return self._call(
            "list the protection containers",
            lambda c: _dicts(c.replication_protection_containers.list(s.resource_group, s.vault)),
        )

    def list_recovery_services_providers(self) -> list[JSON]:
        """The VMM servers and Hyper-V sites registered with the vault, with their connection."""
        s = self._settings
        return self._call(
            "list the recovery services providers",
            lambda c: _dicts(
                c.replication_recovery_services_providers.list(s.resource_group, s.vault)
            ),
        )

    def get_job(self, name: str) -> JSON:
        s = self._settings
        return self._call(
            f"read job {name}",
            lambda c: c.replication_jobs.get(s.resource_group, s.vault, name).as_dict(),
        )

    def list_jobs(self) -> list[JSON]:
        s = self._settings
        return self._call(
            "list the jobs", lambda c: _dicts(c.replication_jobs.list(s.resource_group, s.vault))
        )

    def list_recovery_points(self, ref: ItemRef) -> list[JSON]:
        s = self._settings
        return self._call(
            f"list the recovery points of {ref.name}",
            lambda c: _dicts(
                c.recovery_points.list_by_replication_protected_items(
                    s.resource_group, s.vault, ref.fabric, ref.container, ref.name
                )
            ),
        )

    # --- actions ---------------------------------------------------------------

    def post_action(
        self, ref: ItemRef, action: str, body: JSON | None, request_id: str | None
    ) -> Accepted:
        """POST one action (`planned_failover`, ...) on an item: ASR answers 202 with the job.

        Sent once: no SDK retry, no polling. `request_id` goes out as
        `x-ms-client-request-id`, which ASR keeps as the job's activityId.
        """
        s = self._settings
        seen: list[PipelineResponse[Any, Any]] = []
        extra: dict[str, Any] = {"polling": False, "raw_response_hook": seen.append}
        if request_id is not None:
            extra["request_id"] = request_id

        def send(c: SiteRecoveryManagementClient) -> Accepted:
            seen.clear()
            method = getattr(c.replication_protected_items, f"begin_{action}")
            args: list[Any] = [s.resource_group, s.vault, ref.fabric, ref.container, ref.name]
            if body is not None:
                args.append(body)
            method(*args, **extra)
            response = seen[-1].http_response
            return Accepted(response.status_code, dict(response.headers), _body(response))

        return self._call(f"start {action} on protected item {ref.name}", send, action=True)

    # --- recovery plans ----------------------------------------------------------

    def list_plans(self) -> list[JSON]:
        """Every recovery plan of the vault (`drctl import --from-recovery-plans`)."""
        s = self._settings
        return self._call(
            "list the recovery plans",
            lambda c: _dicts(c.replication_recovery_plans.list(s.resource_group, s.vault)),
        )

    def get_plan(self, name: str) -> JSON | None:
        """The recovery plan `name`, None when the vault has none of that name."""
        s = self._settings

        def read(c: SiteRecoveryManagementClient) -> JSON | None:
            try:
                return c.replication_recovery_plans.get(s.resource_group, s.vault, name).as_dict()
            except ResourceNotFoundError:
                return None

        return self._call(f"read recovery plan {name}", read)

    def write_plan(self, name: str, body: JSON, *, create: bool) -> JSON:
        """PUT (create) or PATCH (update) the recovery plan `name`; its answer as read back."""
        s = self._settings

        def write(c: SiteRecoveryManagementClient) -> JSON:
            plans = c.replication_recovery_plans
            method = plans.begin_create if create else plans.begin_update
            poller = method(s.resource_group, s.vault, name, body)
            return poller.result().as_dict()

        verb = "create" if create else "update"
        return self._call(f"{verb} recovery plan {name}", write, action=True)

    def delete_plan(self, name: str) -> None:
        """DELETE the recovery plan `name` (its protected items are not touched)."""
        s = self._settings

        def delete(c: SiteRecoveryManagementClient) -> None:
            c.replication_recovery_plans.begin_delete(s.resource_group, s.vault, name).result()

        self._call(f"delete recovery plan {name}", delete, action=True)

    def post_plan_action(
        self, name: str, action: str, body: JSON | None, request_id: str | None
    ) -> Accepted:
        """POST one plan-level action (`planned_failover`, `failover_commit`, `reprotect`,
        `unplanned_failover`): sent once, no polling, as `post_action`."""
        s = self._settings
        seen: list[PipelineResponse[Any, Any]] = []
        extra: dict[str, Any] = {"polling": False, "raw_response_hook": seen.append}
        if request_id is not None:
            extra["request_id"] = request_id

        def send(c: SiteRecoveryManagementClient) -> Accepted:
            seen.clear()
            method = getattr(c.replication_recovery_plans, f"begin_{action}")
            args: list[Any] = [s.resource_group, s.vault, name]
            if body is not None:
                args.append(body)
            method(*args, **extra)
            response = seen[-1].http_response
            return Accepted(response.status_code, dict(response.headers), _body(response))

        return self._call(f"start {action} on recovery plan {name}", send, action=True)

    def close(self) -> None:
        if self._sdk is not None:
            self._sdk.close()
            self._sdk = None
        if self._credential is not None:
            with contextlib.suppress(Exception):
                self._credential.close()
            self._credential = None

    # --- the SDK, errors ---------------------------------------------------------

    def _client(self) -> SiteRecoveryManagementClient:
        if self._sdk is None:
            self._credential = _credential(self._settings.credential)
            extra: dict[str, Any] = {}
            if self._verify is not None:
                extra["connection_verify"] = self._verify
            self._sdk = SiteRecoveryManagementClient(
                self._credential,
                self._settings.subscription_id,
                base_url=self._settings.endpoint,
                retry_total=0,
                per_retry_policies=[_Bucketed(self._buckets)],
                **extra,
            )
        return self._sdk

    def _call(
        self, what: str, call: Callable[[SiteRecoveryManagementClient], T], *, action: bool = False
    ) -> T:
        for attempt in (1, 2):
            try:
                return call(self._client())
            except ClientAuthenticationError as exc:
                if exc.response is None or attempt == 2:
                    raise self._auth_error(what, exc) from exc
                # A 401: the token may have been revoked or rotated. Start over
                # with a new credential and client (no cached token), once.
                self.close()
            except HttpResponseError as exc:
                raise self._http_error(what, exc, action=action) from exc
            except ServiceRequestError as exc:
                raise _request_error(what, exc) from exc
            except ServiceResponseError as exc:
                raise errors.TransientError(
                    f"ASR did not answer {what} (the answer was lost: {_one_line(exc)}); "
                    "retrying later"
                ) from exc
            except AzureError as exc:
                raise errors.TransientError(f"{what} failed: {_one_line(exc)}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _auth_error(self, what: str, exc: AzureError) -> errors.TerminalError:
        s = self._settings
        if getattr(exc, "response", None) is None:
            cause = f"it could not get a token: {_one_line(exc)}"
        else:
            cause = "ARM refused its token twice (401), a fresh one too"
        return errors.TerminalError(
            f"fabric '{s.fabric}': {s.credential_text} failed to {what}: {cause}; check that "
            f"it signs in to the tenant of subscription {s.subscription_id}"
        )

    def _http_error(
        self, what: str, exc: HttpResponseError, *, action: bool
    ) -> errors.ProviderError:
        status = exc.status_code or 0
        said = _asr_error(exc)
        if status == 429:
            return errors.ThrottledError(
                f"ARM throttled the request to {what} (429): {said}", _retry_after(exc)
            )
        if status >= 500 or status in {408, 0}:
            return errors.TransientError(f"ASR failed to {what} ({status}): {said}; retrying later")
        if status == 403:
            s = self._settings
            return errors.TerminalError(
                f"fabric '{s.fabric}': the principal of {s.credential_text} may not {what} "
                f"(403): {said}; it needs {_ROLES}"
            )
        if action and status in {400, 409}:
            return errors.RejectedError(f"ASR refused to {what} ({status}): {said}")
        return errors.TerminalError(f"ASR refused to {what} ({status}): {said}")


def _credential(name: str) -> Any:
    """The azure-identity credential a declaration names (see settings.CREDENTIALS)."""
    if name == "cli":
        return AzureCliCredential(process_timeout=30)
    if name == "environment":
        return EnvironmentCredential()
    if name == "managedIdentity":
        return ManagedIdentityCredential()
    if name == "workloadIdentity":
        return WorkloadIdentityCredential()
    return DefaultAzureCredential()


def _dicts(models: Iterable[Any]) -> list[JSON]:
    return [m.as_dict() for m in models]


def _body(response: Any) -> JSON | None:
    try:
        text = response.text()
    except Exception:  # noqa: BLE001 (a streamed body that cannot be read is no body)
        return None
    if not text:
        return None
    with contextlib.suppress(ValueError):
        found = json.loads(text)
        return found if isinstance(found, dict) else None
    return None


def _asr_error(exc: HttpResponseError) -> str:
    """ASR's error as one line: code, message, possible causes, recommended action."""
    body: Any = None
    if exc.response is not None:
        with contextlib.suppress(Exception):
            body = json.loads(exc.response.text())
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return _one_line(exc.message or exc.reason or "no details")
    parts = [f"{error.get('code', '?')}: {error.get('message', '')}".strip()]
    if error.get("possibleCauses"):
        parts.append(f"possible causes: {error['possibleCauses']}")
    if error.get("recommendedAction"):
        parts.append(f"recommended action: {error['recommendedAction']}")
    return _one_line("; ".join(parts))


def _retry_after(exc: HttpResponseError) -> float | None:
    response: Any = exc.response
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: drctl backs off on its own schedule


def _request_error(what: str, exc: ServiceRequestError) -> errors.ProviderError:
    text = _one_line(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return errors.TerminalError(
            f"the TLS certificate of the ARM endpoint did not verify when drctl tried to {what} "
            f"({text}): a private CA is trusted through REQUESTS_CA_BUNDLE (a PEM file); "
            "verification is never turned off"
        )
    return errors.TransientError(f"ASR could not be reached to {what}: {text}; retrying later")


def _one_line(value: object, limit: int = 400) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
