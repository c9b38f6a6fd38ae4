"""The one client of etcd: its v3 JSON gateway (`/v3/...`) over the stdlib's http.client.

The leader election (engine/lease/etcd.py) and the shared journal
(engine/journal_etcd.py) call etcd only through `Gateway`. Why the gateway
and not a gRPC client: `etcd3` does not import with current protobuf, and
`aetcd` is asyncio over grpcio (a large native dependency and an event loop)
for what is here a handful of unary calls: lease grant, keepalive, revoke,
txn, range, compaction, status, each a POST of a small JSON document
(keys and values base64, int64 as strings). Why http.client and not httpx:
httpx is no dependency of drctl, and nothing here needs more than one
keep-alive connection per endpoint with a socket timeout.

`Gateway` fails over between the listed endpoints itself: a call goes to
the endpoint that answered last; on a connection error, a timeout, or an
answer that the member cannot serve now (no leader, not started), it tries
the next one, each at most once per call. Only when none answers does the
call fail, with `EtcdUnavailableError`. An answer etcd gives on purpose (a
compare that failed is no error: it is `succeeded: false`) is returned.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.errors import EtcdUnavailableError, UsageError

SCHEME = "etcd://"
DEFAULT_PREFIX = "/drctl"
# One call to one member: a member that takes longer is treated as gone and
# the next one is asked (a lease TTL is seconds: a call must leave time for that).
CALL_TIMEOUT = 1.0

Json = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """What `--lock etcd://host:port[,host:port...]/prefix` names."""

    endpoints: tuple[tuple[str, int], ...]
    prefix: str

    def __str__(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.endpoints)
        return f"{SCHEME}{hosts}{self.prefix}"


def parse_target(text: str) -> Target:
    """Parse `etcd://host:port[,host:port...][/prefix]`; UsageError (exit 2) saying why not."""
    example = "e.g. etcd://10.0.0.1:2379,10.1.0.1:2379,10.2.0.1:2379/drctl"
    if not text.startswith(SCHEME):
        raise UsageError(f"--lock must be an etcd:// URL ({example}), not {text!r}")
    rest = text[len(SCHEME) :]
    hosts, slash, path = rest.partition("/")
    prefix = "/" + path.strip("/") if slash and path.strip("/") else DEFAULT_PREFIX
    endpoints = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise UsageError(
                f"--lock names etcd members as HOST:PORT ({example}), not {item.strip()!r}"
            )
        endpoints.append((host.strip("[]"), int(port)))
    return Target(tuple(endpoints), prefix)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The `range_end` that makes a range of every key starting with `prefix`."""
    raw = prefix.encode()
    return b64(raw[:-1] + bytes([raw[-1] + 1]))


class Gateway:
    """etcd's JSON gateway at several endpoints; thread-safe (one call at a time)."""

    def __init__(self, endpoints: Sequence[tuple[str, int]], timeout: float = CALL_TIMEOUT) -> None:
        if not endpoints:
            raise UsageError("no etcd endpoint given")
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self._current = 0
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        host, port = self.endpoints[self._current]
        return f"{host}:{port}"

    def call(self, path: str, body: Json) -> Json:
        """POST `body` to `path` at the first endpoint that answers, else EtcdUnavailableError."""
        payload = json.dumps(body).encode()
        failures = []
        failure: BaseException | None = None
        with self._lock:
            for _ in range(len(self.endpoints)):
                # A kept-alive connection the member closed (it restarted) fails
                # at once: asked again on a new one before the next member.
                for _fresh in range(2 if self._connection is not None else 1):
                    try:
                        return self._post(path, payload)
                    except (OSError, http.client.HTTPException, _NotServingError) as exc:
                        failure = exc
                        self._drop()
                        if isinstance(exc, TimeoutError | _NotServingError):
                            break
                failures.append(f"{self.current}: {failure or type(failure).__name__}")
                self._current = (self._current + 1) % len(self.endpoints)
        raise EtcdUnavailableError("no etcd member answered (" + "; ".join(failures) + ")")

    def _post(self, path: str, payload: bytes) -> Json:
        if self._connection is None:
            host, port = self.endpoints[self._current]
            self._connection = http.client.HTTPConnection(host, port, timeout=self.timeout)
        self._connection.request(
            "POST", path, body=payload, headers={"Content-Type": "application/json"}
        )
        answer = self._connection.getresponse()
        data = answer.read()
        try:
            decoded: Json = json.loads(data) if data else {}
        except ValueError as exc:
            raise _NotServingError(f"answered {answer.status} with no JSON") from exc
        if answer.status >= 500 or answer.status == 404:
            # No leader, not ready, a member being removed: another member may serve.
            raise _NotServingError(decoded.get("error") or decoded.get("message") or answer.status)
        if answer.status >= 400:
            raise EtcdUnavailableError(
                f"etcd refused {path}: {decoded.get('error') or decoded.get('message')}"
            )
        # A streaming call (keepalive) wraps its one answer in "result".
        result = decoded.get("result")
        return result if isinstance(result, dict) else decoded

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    # --- the calls drctl makes ----------------------------------------------

    def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease of `ttl` seconds: (its id, the TTL etcd gave)."""
        got = self.call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(got["ID"]), int(got.get("TTL", 0))

    def keepalive(self, lease: int) -> int:
        """Renew `lease`: the TTL it has again, 0 or less when it expired (or was revoked)."""
        got = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(got.get("TTL", 0))

    def revoke(self, lease: int) -> None:
        self.call("/v3/lease/revoke", {"ID": str(lease)})

    def txn(self, compare: list[Json], success: list[Json], failure: list[Json]) -> Json:
        return self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": failure})

    def range_prefix(self, prefix: str, *, limit: int = 0) -> list[Json]:
        body: Json = {"key": b64(prefix), "range_end": prefix_end(prefix)}
        if limit:
            body["limit"] = str(limit)
        return list(self.call("/v3/kv/range", body).get("kvs", []))

    def get(self, key: str) -> Json | None:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return kvs[0] if kvs else None

    def put(self, key: str, value: str) -> int:
        """Put without a condition; the revision it made."""
        got = self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})
        return int(got["header"]["revision"])

    def compact(self, revision: int) -> None:
        """Drop the history of every key before `revision` (etcd's MVCC compaction)."""
        try:
            self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except EtcdUnavailableError as exc:
            if "compacted" not in str(exc):  # already compacted that far: done
                raise

    def defragment(self) -> None:
        """Give the space compaction freed back to the file system (this member only)."""
        self.call("/v3/maintenance/defragment", {})

    def status(self) -> Json:
        return self.call("/v3/maintenance/status", {})


class _NotServingError(Exception):
    """The member answered, but cannot serve the call now: ask another one."""


def put_op(key: str, value: str, lease: int = 0) -> Json:
    request: Json = {"key": b64(key), "value": b64(value)}
    if lease:
        request["lease"] = str(lease)
    return {"request_put": request}


def range_op(key: str) -> Json:
    return {"request_range": {"key": b64(key)}}


def delete_op(key: str) -> Json:
    return {"request_delete_range": {"key": b64(key)}}


def value_of(kv: Json) -> str:
    return unb64(kv.get("value", "")).decode()


def key_of(kv: Json) -> str:
    return unb64(kv["key"]).decode()
