"""A local ARM-protocol HTTPS server for the ASR provider's tests, on 127.0.0.1.

It answers the requests the official SDK sends for one recovery vault
(`vault.Vault`), in the shapes of the official examples: the vault-level
protected items list in pages of `page_size` with nextLink, one item, its
recovery points, the protection containers and recovery services providers,
the action POSTs (202 with Location, Azure-AsyncOperation and Retry-After),
the jobs, and recovery plans (get, PUT to create, PATCH to update, DELETE, the
plan-level plannedFailover, unplannedFailover, failoverCommit, reprotect,
testFailover and testFailoverCleanup POSTs answering as an item's). TLS with a throwaway CA (trustme): clients verify it through
REQUESTS_CA_BUNDLE or the SDK's connection_verify, never with verification
off. Only the bearer token the stand-in `az` hands out is accepted
(`identity`). `inject` makes the next matching request answer an error
(429 with or without Retry-After, 5xx, 400), before the request takes
effect or, for a POST, after (`after_start`: the job started, the answer
was lost: an error, or with `reset` no answer at all). `requests` records every request, for the tests and the
benchmark to count.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from fabric.asr import identity, shapes
from fabric.asr import vault as v

API_VERSION = "2025-08-01"
RESET = 0  # the status recorded for a request whose connection was dropped unanswered


@dataclass
class Fault:
    """The answer the next request matching `method` and `path` (substrings; empty: any) gets."""

    status: int
    method: str = ""
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    after_start: bool = False  # a POST takes effect first, then answers `status`
    reset: bool = False  # with after_start: no answer at all, the connection dropped

    def matches(self, method: str, path: str) -> bool:
        return (not self.method or self.method == method) and self.path.lower() in path.lower()


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    client_request_id: str | None
    body: Any = None  # the JSON a POST carried


class ArmServer:
    """`vault` served over HTTPS at `endpoint` until `close`."""

    def __init__(
        self,
        vault: v.Vault,
        directory: Path,
        *,
        retry_after: float = 30,
        authority: identity.TokenAuthority | None = None,
    ) -> None:
        self.vault = vault
        self.retry_after = retry_after
        self.authority = authority or identity.install()
        self.faults: list[Fault] = []
        self.refuse_tokens = False  # every token is refused (401), a fresh one too
        # ARM's own throttling when `arm_limits`: per subscription and principal, reads
        # 250 burst refilled at 25/s, writes 200 burst at 10/s, on the vault's clock.
        self.arm_limits = False
        self._buckets = {"read": _Bucket(250.0, 25.0), "write": _Bucket(200.0, 10.0)}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        ca = trustme.CA()
        self.ca_path = directory / "arm-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._http.socket = context.wrap_socket(self._http.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{self._http.server_address[1]}"
        # A short poll: close() waits for the loop to notice, once per fabric a test builds.
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def seen(self, method: str = "", path: str = "") -> list[Seen]:
        """The requests so far whose method is `method` and whose path holds `path`."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (not method or r.method == method) and path.lower() in r.path.lower()
            ]

    def count(self, method: str = "", path: str = "") -> int:
        return len(self.seen(method, path))

    # --- one request -----------------------------------------------------------------

    def answer(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        url = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(url.query)
        path = url.path
        status, out_headers, out = self._answer(method, path, query, headers, body)
        with self._lock:
            sent = json.loads(body) if body else None
            self.requests.append(
                Seen(method, target, status, headers.get("x-ms-client-request-id"), sent)
            )
        return status, out_headers, out

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], Any]:
        token = f"Bearer {self.authority.current()}"
        if self.refuse_tokens or headers.get("authorization") != token:
            return (
                401,
                {
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline'
                    '.com/common", error="invalid_token", error_description="The access token '
                    'is invalid."'
                },
                _error("InvalidAuthenticationToken", "The access token is invalid."),
            )
        throttled = self._throttle(method)
        if throttled is not None:
            return (
                429,
                {"Retry-After": f"{throttled:.0f}"},
                _error("TooManyRequests", "The request is throttled: too many requests."),
            )
        if "api-version" not in query:
            return 400, {}, _error("MissingApiVersionParameter", "The api-version is missing.")
        fault = self._take_fault(method, path + ("?" if "$skiptoken" not in query else ""))
        if fault is not None and not fault.after_start:
            return fault.status, fault.headers, _error(str(fault.status), "Injected fault.")
        try:
            with self.vault.lock:
                self.vault.advance()
                request_id = headers.get("x-ms-client-request-id")
                status, out_headers, out = self._route(method, path, query, body, request_id)
        except v.VaultError as exc:
            return exc.status, {}, exc.body
        if fault is not None and fault.reset:
            return RESET, {}, None
        if fault is not None:
            return fault.status, fault.headers, _error("InternalServerError", "Injected fault.")
        return status, out_headers, out

    def _throttle(self, method: str) -> float | None:
        """Seconds to wait when ARM's bucket for this request is empty; None: served."""
        if not self.arm_limits:
            return None
        with self._lock:
            return self._buckets["read" if method == "GET" else "write"].take(self.vault.now())

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for number, fault in enumerate(self.faults):
                if fault.matches(method, path):
                    return self.faults.pop(number)
        return None

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        request_id: str | None,
    ) -> tuple[int, dict[str, str], Any]:
        vault = self.vault
        prefix = vault.vault_path.lower() + "/"
        if not path.lower().startswith(prefix):
            raise v.VaultError(404, "ResourceNotFound", f"no vault at {path}")
        parts = path[len(prefix) :].split("/")
        kind = parts[0].lower()
        if method == "GET" and parts == ["replicationProtectedItems"]:
            items = [shapes.item_json(vault, i) for i in vault.items.values()]
            return 200, {}, self._page(items, path, query)
        if method == "GET" and kind == "replicationprotectioncontainers" and len(parts) == 1:
            return 200, {}, {"value": shapes.containers_json(vault)}
        if method == "GET" and kind == "replicationrecoveryservicesproviders" and len(parts) == 1:
            return 200, {}, {"value": shapes.providers_json(vault)}
        if method == "GET" and kind == "replicationjobs" and len(parts) == 1:
            jobs = [shapes.job_json(vault, j) for j in vault.jobs.values()]
            return 200, {}, self._page(jobs, path, query)
        if method == "GET" and kind == "replicationjobs" and len(parts) == 2:
            job = vault.jobs.get(parts[1])
            if job is None:
                raise v.VaultError(404, "ResourceNotFound", f"job {parts[1]} was not found")
            return 200, {"Retry-After": f"{self.retry_after:g}"}, shapes.job_json(vault, job)
        if kind == "replicationrecoveryplans":
            return self._plans(method, parts[1:], body, request_id)
        if kind == "replicationfabrics" and len(parts) >= 6:
            item = vault.item_by_path(parts[1], parts[3], parts[5])
            rest = [p.lower() for p in parts[6:]]
            if method == "GET" and not rest:
                return 200, {}, shapes.item_json(vault, item)
            if method == "GET" and rest == ["recoverypoints"]:
                return 200, {}, {"value": vault.recovery_points(item)}
            if method == "POST" and len(rest) == 1:
                return self._act(item, rest[0], body, request_id)
        raise v.VaultError(404, "InvalidResourceType", f"{method} {path} is not served here")

    def _plans(
        self, method: str, rest: list[str], body: bytes, request_id: str | None
    ) -> tuple[int, dict[str, str], Any]:
        """Recovery plans: list, get, create (PUT), update (PATCH), delete, the plan-level POSTs."""
        vault = self.vault
        if method == "GET" and not rest:
            return 200, {}, {"value": [shapes.plan_json(vault, p) for p in vault.plans.values()]}
        if method in {"PUT", "PATCH"} and len(rest) == 1:
            payload = json.loads(body) if body else {}
            written = vault.write_plan(rest[0], payload, create=method == "PUT")
            return 200, {}, shapes.plan_json(vault, written)
        plan = vault.plans.get(rest[0]) if rest else None
        if plan is None:
            raise v.VaultError(404, "ResourceNotFound", f"recovery plan {rest[:1]} was not found")
        if method == "GET" and len(rest) == 1:
            return 200, {}, shapes.plan_json(vault, plan)
        if method == "DELETE" and len(rest) == 1:
            vault.delete_plan(plan)
            return 204, {}, None
        if method == "POST" and len(rest) == 2:
            op = v.PLAN_ACTIONS.get(rest[1].lower())
            if op is None:
                raise v.VaultError(400, "OperationNotServed", f"{rest[1]} is not served here")
            payload = json.loads(body) if body else {}
            return self._accepted(vault.start_plan(plan, op, payload, request_id))
        raise v.VaultError(404, "InvalidResourceType", f"{method} {rest} is not served here")

    def _act(
        self, item: v.ItemState, action: str, body: bytes, request_id: str | None
    ) -> tuple[int, dict[str, str], Any]:
        op = v.ACTIONS.get(action)
        if op is None:
            # failoverCancel, completeMigration, ...: refused and recorded; drctl never sends them.
            raise v.VaultError(400, "OperationNotServed", f"{action} is not served here")
        payload = json.loads(body) if body else {}
        return self._accepted(self.vault.start(item, op, payload, request_id))

    def _accepted(self, job: v.JobRecord) -> tuple[int, dict[str, str], Any]:
        base = f"{self.endpoint}{self.vault.vault_path}"
        return (
            202,
            {
                "Location": f"{base}/replicationJobs/{job.name}/operationresults/{job.name}"
                f"?api-version={API_VERSION}",
                "Azure-AsyncOperation": f"{base}/replicationOperationStatus/{job.name}"
                f"?api-version={API_VERSION}",
                "Retry-After": f"{self.retry_after:g}",
            },
            None,
        )

    def _page(self, values: list[Any], path: str, query: dict[str, list[str]]) -> Any:
        start = int((query.get("$skiptoken") or ["0"])[0])
        page = values[start : start + self.vault.page_size]
        found: dict[str, Any] = {"value": page}
        if start + self.vault.page_size < len(values):
            found["nextLink"] = (
                f"{self.endpoint}{path}?api-version={API_VERSION}"
                f"&$skiptoken={start + self.vault.page_size}"
            )
        return found


@dataclass
class _Bucket:
    burst: float
    per_second: float
    tokens: float = -1.0
    at: float | None = None

    def take(self, now: float) -> float | None:
        """None when a token is left (taken), else the seconds until there is one."""
        if self.at is None:
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        # A thousandth of a token of slack: the client's bucket refills on the same
        # clock, and float sums of epoch seconds must not turn its last allowed request
        # into a 429.
        if self.tokens < 1 - 1e-3:
            return max(1.0, (1 - self.tokens) / self.per_second)
        self.tokens -= 1
        return None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _handler(server: ArmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out_headers, out = server.answer(self.command, self.path, headers, body)
            if status == RESET:
                # The answer is lost: the connection drops as a reset or a timeout leaves it.
                self.close_connection = True
                self.connection.close()
                return
            data = b"" if out is None else json.dumps(out).encode()
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            self.send_header("x-ms-request-id", "00000000-0000-0000-0000-000000000000")
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

    return Handler
