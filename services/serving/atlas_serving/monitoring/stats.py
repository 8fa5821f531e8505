"""Per-variant statistics in one-second buckets: what alarms, GetEndpointStats and the
rollout driver read. Each replica publishes its recent buckets to the metadata DB; readers
merge the buckets of every live replica, so alarms see the whole fleet."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Engine, select

from atlas_serving.tables import variant_stats

# Latency histogram: geometric buckets from 50 us to ~60 s (about 7% wide).
_BASE_S = 50e-6
_GROWTH = 1.07
_LOG_GROWTH = math.log(_GROWTH)
KEEP_SECONDS = 180

COUNTERS = (
    "requests",
    "errors",
    "rejected",
    "batches",
    "batch_rows",
    "cold_starts",
    "compared",
    "agreed",
    "shadow_errors",
)


def latency_bucket(seconds: float) -> int:
    if seconds <= _BASE_S:
        return 0
    return int(math.log(seconds / _BASE_S) / _LOG_GROWTH) + 1


def bucket_upper(index: int) -> float:
    return _BASE_S * _GROWTH**index


_BUCKET_NAMES = [str(i) for i in range(200)]
_MAX_NAMED_S = bucket_upper(198)


class WindowStats:
    """Counters and latency histograms of one variant on one replica (event-loop only)."""

    def __init__(self) -> None:
        self.seconds: dict[int, dict[str, Any]] = {}
        self.last_cold_start_s = 0.0
        self._second = -1
        self._slot: dict[str, Any] = {}
        self._frozen: dict[int, str] = {}  # JSON of seconds that are over (they never change)

    def _now(self) -> dict[str, Any]:
        second = int(time.time())
        if second == self._second:
            return self._slot
        slot = self.seconds.get(second)
        if slot is None:
            slot = {"lat": {}, "shadow_lat": {}, "score_diff": 0.0}
            self.seconds[second] = slot
            for old in [s for s in self.seconds if s < second - KEEP_SECONDS]:
                del self.seconds[old]
        self._second, self._slot = second, slot
        return slot

    def count(self, name: str, n: int = 1) -> None:
        slot = self._now()
        slot[name] = slot.get(name, 0) + n

    def latency(self, seconds: float, *, error: bool = False, key: str = "lat") -> None:
        slot = self._now()
        b = (
            _BUCKET_NAMES[latency_bucket(seconds)]
            if seconds < _MAX_NAMED_S
            else str(latency_bucket(seconds))
        )
        hist = slot[key]
        hist[b] = hist.get(b, 0) + 1
        if key == "lat":
            slot["requests"] = slot.get("requests", 0) + 1
            if error:
                slot["errors"] = slot.get("errors", 0) + 1

    def shadow(self, agreed: bool, score_diff: float, seconds: float) -> None:
        slot = self._now()
        slot["compared"] = slot.get("compared", 0) + 1
        slot["agreed"] = slot.get("agreed", 0) + int(agreed)
        slot["score_diff"] += score_diff
        self.latency(seconds, key="shadow_lat")

    def export(self) -> dict[str, Any]:
        return {
            "seconds": {str(k): v for k, v in self.seconds.items()},
            "last_cold_start_s": self.last_cold_start_s,
        }

    def export_json(self, **extra: Any) -> str:
        """``json.dumps(export() | extra)``, re-encoding only the seconds still open: this runs
        on the event loop several times a second and a full encode of 180 s of histograms
        costs milliseconds (a latency spike for every request waiting behind it)."""
        open_from = int(time.time())
        frozen = self._frozen
        parts = []
        for second, slot in self.seconds.items():
            if second < open_from:
                part = frozen.get(second)
                if part is None:
                    part = frozen[second] = f'"{second}": {json.dumps(slot)}'
            else:
                part = f'"{second}": {json.dumps(slot)}'
            parts.append(part)
        if len(frozen) > len(self.seconds):
            for second in [k for k in frozen if k not in self.seconds]:
                del frozen[second]
        rest = json.dumps({"last_cold_start_s": self.last_cold_start_s, **extra})
        return '{"seconds": {' + ", ".join(parts) + "}, " + rest[1:]


def merge(
    exports: Iterable[Mapping[str, Any]], window_s: float, now: float | None = None
) -> dict[str, Any]:
    """Sum the buckets of several replicas over the last ``window_s`` seconds."""
    now = time.time() if now is None else now
    first = now - window_s
    total: dict[str, Any] = {name: 0 for name in COUNTERS}
    total.update(lat={}, shadow_lat={}, score_diff=0.0, last_cold_start_s=0.0)
    for export in exports:
        total["last_cold_start_s"] = max(
            total["last_cold_start_s"], export.get("last_cold_start_s", 0.0)
        )
        for second, slot in export.get("seconds", {}).items():
            if int(second) < first:
                continue
            for name in COUNTERS:
                total[name] += slot.get(name, 0)
            total["score_diff"] += slot.get("score_diff", 0.0)
            for key in ("lat", "shadow_lat"):
                for b, n in slot.get(key, {}).items():
                    total[key][b] = total[key].get(b, 0) + n
    return total


def percentile_ms(hist: Mapping[str, int], q: float) -> float:
    count = sum(hist.values())
    if not count:
        return 0.0
    rank = q * count
    seen = 0
    for b in sorted(hist, key=int):
        seen += hist[b]
        if seen >= rank:
            return bucket_upper(int(b)) * 1000.0
    return bucket_upper(max(int(b) for b in hist)) * 1000.0


def read_stats(
    engine: Engine, endpoint: str, max_age_s: float = 30.0
) -> dict[str, list[dict[str, object]]]:
    """variant -> exports of every replica that published recently."""
    fresh = int((time.time() - max_age_s) * 1e6)
    with engine.connect() as conn:
        rows = conn.execute(
            select(variant_stats.c.variant, variant_stats.c.buckets).where(
                (variant_stats.c.endpoint_name == endpoint) & (variant_stats.c.updated_us >= fresh)
            )
        ).all()
    out: dict[str, list[dict[str, object]]] = {}
    for variant, raw in rows:
        out.setdefault(variant, []).append(json.loads(raw))
    return out
