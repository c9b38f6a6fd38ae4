"""The leader lease on etcd: one replica of several acts, the others follow (`--lock etcd://`).

`drctl run --lock etcd://...` makes an `Election` and runs `keep` on a
thread of its own (daemon/leader.py); the loop asks `leading` before each
pass, and the executor calls `check` before each start and again just
before each provider call; the shared journal (engine/journal_etcd.py) puts
`fence()` in the etcd transaction of every write.

Campaign: while `<prefix>/leader` does not exist, a replica grants a lease
of `ttl` seconds and creates the key with it in one transaction (compare
its create revision with 0): exactly one succeeds. The key's create
revision is the fencing token: it grows with each new leader, and every
journal write compares it and the key's lease, so a deposed leader's write
fails in etcd. The holder renews its lease every `renew_every` seconds (a
quarter of the TTL, at most 5 s). Its local deadline is when it sent the
last renewal that succeeded, plus the TTL etcd gave, minus `margin`: etcd
counts the TTL from when the request reached it, later than it left, so
the deadline passes before the lease can expire in etcd. `check` raises
past it.

A renewal that no member answers counts a failure and stops every start at
once (`check` raises) while it retries; if one succeeds before the
deadline the replica leads on, else it steps down: it forgets the lease,
and campaigns again like any follower once the key is gone. A lease etcd
says expired, or a key no longer ours, steps down at once. Nothing is
cancelled on the way down: jobs run on, the next leader follows them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.engine import etcd_gateway as gateway_
from reconciler.errors import EtcdUnavailableError, LeadershipLostError

DEFAULT_TTL = 15.0


def default_identity() -> str:
    """`host:pid`: what a replica is called unless `--identity` says."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Fence:
    """What a journal write compares in its etcd transaction, and the token it records."""

    compare: tuple[gateway_.Json, ...]
    token: int


class Election:
    """One replica's campaign for `<prefix>/leader`, and its lease while it holds the key."""

    def __init__(
        self,
        gateway: gateway_.Gateway,
        prefix: str,
        identity: str,
        ttl: float = DEFAULT_TTL,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool, str | None, bool], None] = lambda _l, _h, _t: None,
        on_renew_failure: Callable[[], None] = lambda: None,
    ) -> None:
        self.gateway = gateway
        self.key = f"{prefix}/leader"
        self.identity = identity
        self.ttl = ttl
        self.renew_every = min(5.0, ttl / 4)
        self.margin = ttl / 5
        self._monotonic = monotonic
        self._on_change = on_change
        self._on_renew_failure = on_renew_failure
        self._lock = threading.Lock()
        self._lease = 0
        self._token = 0
        self._deadline = 0.0
        self._renew_failing = False
        self._seen_token: int | None = None  # the election key last seen (a holder's term)
        self.holder: str | None = None  # the identity of the holder as last seen
        self.transitions = 0
        self.why_down: str | None = None  # why it last stepped down

    # --- what the daemon and the executor ask ---------------------------------

    @property
    def leading(self) -> bool:
        with self._lock:
            return self._lease != 0

    @property
    def token(self) -> int:
        return self._token

    def remaining(self) -> float:
        """Seconds left before the local deadline (negative once past it)."""
        return self._deadline - self._monotonic()

    def check(self) -> None:
        """Raise LeadershipLostError unless this replica may start an operation now."""
        with self._lock:
            if self._lease == 0:
                raise LeadershipLostError(
                    f"{self.identity} does not hold the lease {self.key}: it starts nothing"
                )
            if self._renew_failing:
                raise LeadershipLostError(
                    f"{self.identity} could not renew its lease {self.key}: it starts nothing "
                    "until a renewal succeeds (or steps down at its deadline)"
                )
            left = self._deadline - self._monotonic()
        if left <= 0:
            raise LeadershipLostError(
                f"the lease of {self.identity} on {self.key} may have expired "
                f"({-left:.2f} s past its local deadline): it starts nothing"
            )

    def fence(self) -> Fence:
        """The compares that prove in etcd that this replica still holds the key and its lease."""
        self.check()
        return Fence(
            (
                {
                    "key": gateway_.b64(self.key),
                    "target": "CREATE",
                    "create_revision": str(self._token),
                },
                {"key": gateway_.b64(self.key), "target": "LEASE", "lease": str(self._lease)},
            ),
            self._token,
        )

    def lost(self, why: str) -> None:
        """A fenced write failed in etcd: the key is not ours any more; step down now."""
        self._step_down(why)

    # --- the keeper thread ----------------------------------------------------

    def keep(self, stop: threading.Event) -> None:
        """Campaign while following, renew while leading, until `stop`; resign at the end."""
        while not stop.is_set():
            self.tick()
            stop.wait(self.renew_every if self.leading else min(1.0, self.renew_every))
        self.resign()

    def tick(self) -> None:
        """One renewal (leading) or one campaign (following)."""
        if self.leading:
            self._renew()
        else:
            self._campaign()

    def _campaign(self) -> None:
        try:
            found = self.gateway.get(self.key)
            if found is not None:
                self._saw(found)
                return
            sent = self._monotonic()
            lease, ttl = self.gateway.grant(max(1, round(self.ttl)))
            answer = self.gateway.txn(
                [{"key": gateway_.b64(self.key), "target": "CREATE", "create_revision": "0"}],
                [gateway_.put_op(self.key, self.identity, lease)],
                [gateway_.range_op(self.key)],
            )
        except EtcdUnavailableError:
            return  # a follower that cannot reach etcd stays one; said by the daemon's status
        if not answer.get("succeeded"):
            with contextlib.suppress(EtcdUnavailableError):
                self.gateway.revoke(lease)
            kvs = answer.get("responses", [{}])[0].get("response_range", {}).get("kvs", [])
            if kvs:
                self._saw(kvs[0])
            return
        token = int(answer["header"]["revision"])
        with self._lock:
            self._lease, self._token = lease, token
            self._deadline = sent + ttl - self.margin
            self._renew_failing = False
        self._note_holder(self.identity, token)

    def _renew(self) -> None:
        sent = self._monotonic()
        try:
            ttl = self.gateway.keepalive(self._lease)
            found = self.gateway.get(self.key) if ttl > 0 else None
        except EtcdUnavailableError:
            self._on_renew_failure()
            with self._lock:
                self._renew_failing = True
            if self._monotonic() >= self._deadline:
                self._step_down("its lease could not be renewed before its deadline")
            return
        if ttl <= 0:
            self._step_down("etcd says its lease expired")
            return
        if found is None or int(found.get("create_revision", 0)) != self._token:
            self._step_down("the election key is no longer its own")
            if found is not None:
                self._saw(found)
            return
        with self._lock:
            self._deadline = sent + ttl - self.margin
            self._renew_failing = False

    def _step_down(self, why: str) -> None:
        with self._lock:
            was = self._lease != 0
            self._lease = 0
            self._renew_failing = False
        if was:
            self.why_down = why
            self._on_change(False, self.holder if self.holder != self.identity else None, False)

    def _saw(self, kv: gateway_.Json) -> None:
        self._note_holder(gateway_.value_of(kv), int(kv.get("create_revision", 0)))

    def _note_holder(self, holder: str, token: int) -> None:
        changed = self._seen_token is not None and token != self._seen_token
        if changed:
            self.transitions += 1
        fresh = token != self._seen_token
        self._seen_token = token
        self.holder = holder
        if fresh:
            self._on_change(self.leading, holder, changed)

    def resign(self) -> None:
        """Give the key up (a clean stop): the next replica takes over without waiting the TTL."""
        with self._lock:
            lease, self._lease = self._lease, 0
        if lease == 0:
            return
        with contextlib.suppress(EtcdUnavailableError):
            self.gateway.txn(
                [{"key": gateway_.b64(self.key), "target": "LEASE", "lease": str(lease)}],
                [gateway_.delete_op(self.key)],
                [],
            )
            self.gateway.revoke(lease)
        self._on_change(False, None, False)
