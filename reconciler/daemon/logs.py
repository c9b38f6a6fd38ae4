"""The daemon's log: one line per event an operator cares about, as text or JSON.

`configure_logging` is called by `drctl run` (cli); every daemon module logs
to `log` with an `event` field, which the JSON format keeps as a key.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

log = logging.getLogger("drctl")


def configure_logging(fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        _JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger("drctl")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


class _JsonFormatter(logging.Formatter):
    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        data.update(
            {
                k: v
                for k, v in vars(record).items()
                if k not in self._STANDARD and k not in {"message", "asctime"}
            }
        )
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)
