"""Cost of a completing SubmitAnnotation on a weighted (Dawid-Skene) project of 20,000
items, in process on SQLite: the submit that brings an item to its overlap and decides it.

    python bench/labeling_ds_submit.py [--items 20000] [--timed 60]

The project's history is inserted directly (three human answers per item from six
simulated annotators); then items are labelled through the service and the third,
deciding, submit is timed. Prints JSON: median / p95 / max ms of those submits, and the
time of one full refit (GetAgreement) where the code has one.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert, update

from atlas_core.db import write_transaction
from atlas_labeling.items import NewItem
from atlas_labeling.schema import TEXT_CLASSIFICATION, LabelDef, ProjectSpec
from atlas_labeling.tables import annotations_table, items
from atlas_labeling.values import Classes, ItemContent, to_json
from tests.unit.labeling.conftest import Clock, build_service

CLASSES = ("a", "b", "c")
ACCURACY = {"p1": 0.9, "p2": 0.85, "p3": 0.8, "p4": 0.7, "p5": 0.6, "adv": 0.0}


def answer(rng: random.Random, who: str, right: str) -> str:
    if who == "adv":
        return CLASSES[(CLASSES.index(right) + 1) % 3]
    if rng.random() < ACCURACY[who]:
        return right
    return rng.choice([c for c in CLASSES if c != right])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--timed", type=int, default=60)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        svc = build_service(f"sqlite:///{root}/meta.db", root / "store", Clock())
        spec = ProjectSpec(
            "ds-bench",
            TEXT_CLASSIFICATION,
            tuple(LabelDef(c) for c in CLASSES),
            overlap=3,
            consensus="weighted",
            consensus_threshold=0.0,
        )
        pid = svc.create_project(spec).project_id
        ids: list[str] = []
        for start in range(0, args.items, 1000):
            n = min(1000, args.items - start)
            got, _ = svc.add_items(
                pid, [NewItem(ItemContent(text=f"t{start + i}")) for i in range(n)]
            )
            ids.extend(got)
        history = ids[: -args.timed]  # the rest is labelled through the service, timed
        truth = {i: rng.choice(CLASSES) for i in ids}
        now = datetime.now(timezone.utc)
        people = sorted(ACCURACY)
        rows = []
        for n, item_id in enumerate(history):
            for k in range(3):
                who = people[(n + k) % len(people)]
                value = json.dumps(to_json(Classes((answer(rng, who, truth[item_id]),))))
                rows.append(
                    {
                        "annotation_id": f"ann-h{n}-{k}",
                        "project_id": pid,
                        "item_id": item_id,
                        "assignment_id": None,
                        "author": who,
                        "source": "human",
                        "value": value,
                        "confidence": 0.0,
                        "model_version": "",
                        "duration_ms": 0,
                        "created_at": now,
                    }
                )
        with write_transaction(svc.rt.engine) as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(insert(annotations_table), rows[start : start + 5000])
            conn.execute(
                update(items)
                .where(items.c.item_id.in_(history))
                .values(status="done", taken=3, submitted=3)
            )
        started = time.perf_counter()
        svc.agreement(pid)  # refits the stored matrices where the code keeps them
        agreement_s = time.perf_counter() - started
        refit_s = None
        if hasattr(svc, "refit_consensus"):  # the stored-matrices code: one full refit alone
            started = time.perf_counter()
            svc.refit_consensus(pid)
            refit_s = round(time.perf_counter() - started, 2)
        costs = []
        for who in ("p1", "p2", "p3"):
            for a in svc.request_assignments(pid, who, args.timed):
                value = Classes((answer(rng, who, truth[a.item_id]),))
                started = time.perf_counter()
                _, status = svc.submit_annotation(a.assignment_id, who, value)
                if who == "p3":
                    assert status == "done", status
                    costs.append((time.perf_counter() - started) * 1000)
        svc.stop()
    costs.sort()
    print(
        json.dumps(
            {
                "items": args.items,
                "answers": len(rows) + 3 * args.timed,
                "deciding_submits": len(costs),
                "submit_ms_median": round(statistics.median(costs), 2),
                "submit_ms_p95": round(costs[int(0.95 * (len(costs) - 1))], 2),
                "submit_ms_max": round(costs[-1], 2),
                "get_agreement_s": round(agreement_s, 2),
                "full_refit_s": refit_s,
            }
        )
    )


if __name__ == "__main__":
    main()
