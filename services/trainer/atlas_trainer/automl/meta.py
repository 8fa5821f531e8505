"""Meta-learning: a store of finished studies, and prior selection by dataset lineage and
meta-features (:mod:`atlas_core.meta_features`, versioned; studies recorded under another
version are never compared, they are not candidates).

A new study enqueues the best configurations of (1) its lineage parents (a derived dataset
starts from what worked on the data it came from), then (2) the k past datasets nearest in
normalised meta-feature space, same task only.

A lineage parent is the same data (a sample, split or new version of it), so its ranking
transfers well: it contributes up to ``LINEAGE_CONFIGS`` configurations, best first but
family-diverse (a family must not crowd out the runner-up families, which often win on a
smaller sample), and its complete trials seed the new study's TPE (:mod:`transfer`). Both
are resized to the new dataset's row count first (:func:`space.resize_config`): a sample of
the parent favours smaller trees than the parent's best. A merely similar dataset
contributes only its top ``configs_per_source``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

from atlas_core.db import Migration, MigrationSet, write_transaction
from atlas_core.meta_features import META_FEATURES_VERSION
from atlas_trainer.automl.space import resize_config

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- meta-features
# Their definition is atlas_core.meta_features (shared with the data service); the store
# keeps each study's similarity vector and the definition's version, and compares only
# studies of the same version.


def meta_distance(a: dict[str, float], b: dict[str, float], scale: dict[str, float]) -> float:
    """Euclidean distance over shared keys, each divided by its scale (std over the store)."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return math.inf
    return math.sqrt(sum(((a[k] - b[k]) / scale.get(k, 1.0)) ** 2 for k in keys) / len(keys))


# --------------------------------------------------------------------------- store


@dataclass
class MetaEntry:
    """A finished study: where it ran, on what, and its best configurations (best first)."""

    study_key: str
    dataset_key: str
    task: str
    metric: str
    higher_is_better: bool
    meta_features: dict[str, float]
    top_configs: list[dict[str, Any]]  # {"trial": int, "score": float, "params": {...}}
    parent_keys: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # {"params", "score"} of its complete trials: a derived dataset's TPE history (transfer.py)
    observations: list[dict[str, Any]] = field(default_factory=list)
    # Definition of ``meta_features`` (atlas_core.meta_features); 1 for studies recorded
    # before the definition was shared and versioned.
    meta_features_version: int = META_FEATURES_VERSION


class MetaStore(ABC):
    """Meta-store contract. Implementations are thread-safe. ``record`` replaces any entry
    with the same ``study_key`` (a resumed study updates its entry)."""

    @abstractmethod
    def record(self, entry: MetaEntry) -> None: ...

    @abstractmethod
    def entries(self, task: str | None = None) -> list[MetaEntry]:
        """All entries (of ``task`` if given), newest first."""


class InMemoryMetaStore(MetaStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, MetaEntry] = {}

    def record(self, entry: MetaEntry) -> None:
        with self._lock:
            self._entries[entry.study_key] = entry

    def entries(self, task: str | None = None) -> list[MetaEntry]:
        with self._lock:
            out = [e for e in self._entries.values() if task is None or e.task == task]
        return sorted(out, key=lambda e: e.created_at, reverse=True)


_md = MetaData()
meta_studies = Table(
    "trainer_meta_studies",
    _md,
    Column("study_key", String(256), primary_key=True),
    Column("dataset_key", String(256), nullable=False, index=True),
    Column("task", String(32), nullable=False, index=True),
    Column("body", Text, nullable=False),  # JSON of the rest of MetaEntry
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("meta_features_version", Integer, nullable=False, server_default="1"),
)


def _v1(conn: Connection) -> None:
    # The table as it was at version 1 (a migration never changes once released).
    v1 = MetaData()
    Table(
        "trainer_meta_studies",
        v1,
        Column("study_key", String(256), primary_key=True),
        Column("dataset_key", String(256), nullable=False, index=True),
        Column("task", String(32), nullable=False, index=True),
        Column("body", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    v1.create_all(conn)


def _v2(conn: Connection) -> None:
    # Studies recorded so far used the trainer's own meta-features: version 1.
    conn.execute(
        text(
            "ALTER TABLE trainer_meta_studies "
            "ADD COLUMN meta_features_version INTEGER NOT NULL DEFAULT 1"
        )
    )


MIGRATIONS = MigrationSet(
    "trainer_meta",
    [
        Migration(1, "meta-learning study store", _v1),
        Migration(2, "meta-features version per study", _v2),
    ],
)


class SqlMetaStore(MetaStore):
    """SQLAlchemy implementation (SQLite or PostgreSQL); apply ``MIGRATIONS`` first."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, entry: MetaEntry) -> None:
        body = json.dumps(
            {
                "metric": entry.metric,
                "higher_is_better": entry.higher_is_better,
                "meta_features": entry.meta_features,
                "top_configs": entry.top_configs,
                "parent_keys": entry.parent_keys,
                "observations": entry.observations,
            },
            default=_json_default,
        )
        with write_transaction(self._engine) as conn:
            conn.execute(meta_studies.delete().where(meta_studies.c.study_key == entry.study_key))
            conn.execute(
                meta_studies.insert().values(
                    study_key=entry.study_key,
                    dataset_key=entry.dataset_key,
                    task=entry.task,
                    body=body,
                    created_at=entry.created_at,
                    meta_features_version=entry.meta_features_version,
                )
            )

    def entries(self, task: str | None = None) -> list[MetaEntry]:
        q = select(meta_studies).order_by(meta_studies.c.created_at.desc())
        if task is not None:
            q = q.where(meta_studies.c.task == task)
        with self._engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for r in rows:
            b = json.loads(r["body"])
            out.append(
                MetaEntry(
                    r["study_key"],
                    r["dataset_key"],
                    r["task"],
                    b["metric"],
                    b["higher_is_better"],
                    b["meta_features"],
                    b["top_configs"],
                    b.get("parent_keys", []),
                    r["created_at"],
                    b.get("observations", []),
                    r["meta_features_version"],
                )
            )
        return out


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


# --------------------------------------------------------------------------- priors

LINEAGE_CONFIGS = 8  # configurations taken from each lineage parent
LINEAGE_PER_FAMILY = 3  # ... at most this many per family while other families are left
RECORDED_CONFIGS = 10  # a finished study records its best N (+ the best of other families)


def config_key(params: dict[str, Any]) -> str:
    """Identity of a configuration (for de-duplication across sources)."""
    return repr(sorted(params.items()))


def diverse_top(
    configs: list[dict[str, Any]], n: int, per_family: int = LINEAGE_PER_FAMILY
) -> list[dict[str, Any]]:
    """Up to ``n`` distinct configurations of ``configs`` (best first): in score order, at
    most ``per_family`` of one family until every family had its turn, then the rest in
    score order. The result keeps the score order of the chosen configurations."""
    uniq: list[dict[str, Any]] = []
    seen: set[str] = set()
    for c in configs:
        key = config_key(c["params"])
        if key not in seen:
            seen.add(key)
            uniq.append(c)
    chosen: list[int] = []
    per: dict[Any, int] = {}
    for i, c in enumerate(uniq):
        fam = c["params"].get("family")
        if len(chosen) < n and per.get(fam, 0) < per_family:
            chosen.append(i)
            per[fam] = per.get(fam, 0) + 1
    for i in range(len(uniq)):
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return [uniq[i] for i in sorted(chosen)]


@dataclass
class Prior:
    """A source of warm-start configurations and, after the study, how it fared."""

    source_study: str
    source_dataset: str
    reason: str  # "base_model", "lineage_parent" or "similar_meta_features"
    distance: float
    configs: list[dict[str, Any]]
    trial_numbers: list[int] = field(default_factory=list)  # enqueued trials in this study
    observations: list[dict[str, Any]] = field(default_factory=list)  # lineage parents only
    trials_learned_from: int = 0  # observations this study's sampler could use (transfer.py)
    # Rank correlation of its scores with this study's over its enqueued configurations
    # (lineage parents with observations; None when too few completed). See transfer.agreement.
    rank_agreement: float | None = None
    best_rank: int = 0  # best leaderboard rank of one of its configs (1 = best; 0 = none)

    @property
    def configs_enqueued(self) -> int:
        return len(self.trial_numbers)


def row_ratio(child: dict[str, float], parent: dict[str, float]) -> float:
    """The child's rows over the parent's (1 when either lacks the ``log_rows`` meta-feature)."""
    if "log_rows" not in child or "log_rows" not in parent:
        return 1.0
    return float(10 ** (child["log_rows"] - parent["log_rows"]))


def _resized(item: dict[str, Any], ratio: float) -> dict[str, Any]:
    return {**item, "params": resize_config(item["params"], ratio)}


def find_priors(
    store: MetaStore,
    meta_features: dict[str, float],
    task: str,
    *,
    parent_keys: tuple[str, ...] = (),
    base_studies: tuple[str, ...] = (),
    exclude_study: str | None = None,
    k: int = 3,
    configs_per_source: int = 3,
    lineage_configs: int = LINEAGE_CONFIGS,
    metric: str | None = None,
    version: int = META_FEATURES_VERSION,
) -> list[Prior]:
    """The studies of replaced models (``base_studies``, reason "base_model") and the
    lineage parents first (distance 0, ``lineage_configs`` family-diverse configurations
    shared among them, and their observations when scored with ``metric``), then the ``k``
    nearest other datasets (``configs_per_source`` each). ``meta_features`` follow
    definition ``version``: studies recorded under another version are not candidates."""
    entries = [e for e in store.entries(task) if e.study_key != exclude_study and e.top_configs]
    other = [e for e in entries if e.meta_features_version != version]
    if other:
        log.info(
            "meta-store: %d past %s studies use another meta-features version than %d "
            "and are not compared",
            len(other),
            task,
            version,
        )
        entries = [e for e in entries if e.meta_features_version == version]
    priors: list[Prior] = []
    parents = [(e, "base_model") for e in entries if e.study_key in base_studies]
    used = {e.dataset_key for e, _ in parents}
    for e in entries:
        if e.dataset_key in parent_keys and e.dataset_key not in used:
            used.add(e.dataset_key)  # newest study per parent dataset
            parents.append((e, "lineage_parent"))
    # Several parents (a merge) share the lineage allowance, each keeping at least as many
    # configurations as a similar dataset would give.
    share = max(configs_per_source, math.ceil(lineage_configs / max(len(parents), 1)))
    for e, reason in parents:
        ratio = row_ratio(meta_features, e.meta_features)
        obs = e.observations if metric is not None and e.metric == metric else []
        priors.append(
            Prior(
                e.study_key,
                e.dataset_key,
                reason,
                0.0,
                [_resized(c, ratio) for c in diverse_top(e.top_configs, share)],
                observations=[_resized(o, ratio) for o in obs],
            )
        )
    rest = [e for e in entries if e.dataset_key not in used]
    if rest and k > 0:
        keys = sorted(meta_features)
        M = np.array(
            [[e.meta_features.get(key, 0.0) for key in keys] for e in rest]
            + [[meta_features[key] for key in keys]]
        )
        scale = {key: max(float(s), 0.05) for key, s in zip(keys, M.std(axis=0))}
        ranked = sorted(rest, key=lambda e: meta_distance(meta_features, e.meta_features, scale))
        similar = 0
        for e in ranked:
            if similar >= k:
                break
            if e.dataset_key in used:
                continue  # newest study per dataset only (entries are newest first)
            used.add(e.dataset_key)
            priors.append(
                Prior(
                    e.study_key,
                    e.dataset_key,
                    "similar_meta_features",
                    meta_distance(meta_features, e.meta_features, scale),
                    e.top_configs[:configs_per_source],
                )
            )
            similar += 1
    return priors


def other_version_studies(
    store: MetaStore, task: str, version: int = META_FEATURES_VERSION
) -> list[MetaEntry]:
    """Past studies of ``task`` whose meta-features follow another definition than
    ``version`` (never warm-start candidates; see :func:`find_priors`)."""
    return [e for e in store.entries(task) if e.meta_features_version != version]
