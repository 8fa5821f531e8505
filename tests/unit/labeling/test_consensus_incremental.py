"""Weighted (Dawid-Skene) consensus decides items with the project's stored confusion
matrices and refits them only every so many decisions; once refreshed, its decisions equal a
full refit's. On SQLite and PostgreSQL."""

from __future__ import annotations

import random

from sqlalchemy import select

from atlas_core.db import write_transaction
from atlas_labeling import consensus
from atlas_labeling.items import NewItem
from atlas_labeling.quality import consensus as qc
from atlas_labeling.schema import TEXT_CLASSIFICATION, LabelDef, ProjectSpec
from atlas_labeling.tables import ds_models
from atlas_labeling.values import Classes, ItemContent

from .conftest import Harness

CLASSES = ("a", "b", "c")
# Simulated annotators: their accuracy; "adv" answers the next class on purpose.
ANNOTATORS = {"p1": 0.9, "p2": 0.8, "p3": 0.7, "p4": 0.6, "adv": 0.0}


def test_stored_matrices_decide_like_a_full_refit(harness: Harness) -> None:
    svc = harness.service
    svc.rt.queue.ds_refit_every = 10
    spec = ProjectSpec(
        "ds",
        TEXT_CLASSIFICATION,
        tuple(LabelDef(c) for c in CLASSES),
        overlap=3,
        consensus="weighted",
        consensus_threshold=0.0,  # decide every item (no relabel rounds)
    )
    pid = svc.create_project(spec).project_id
    rng = random.Random(7)
    truth = {}
    ids, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(40)])
    for i in ids:
        truth[i] = rng.choice(CLASSES)

    def answer(who: str, item_id: str) -> Classes:
        right = truth[item_id]
        if who == "adv":
            return Classes((CLASSES[(CLASSES.index(right) + 1) % 3],))
        if rng.random() < ANNOTATORS[who]:
            return Classes((right,))
        return Classes((rng.choice([c for c in CLASSES if c != right]),))

    fitted_answers = []
    for _ in range(40):
        for who in ANNOTATORS:
            for a in svc.request_assignments(pid, who, 2):
                _, status = svc.submit_annotation(a.assignment_id, who, answer(who, a.item_id))
                if status == "done":
                    with svc.rt.engine.connect() as conn:
                        fitted_answers.append(
                            conn.execute(select(ds_models.c.answers)).scalar_one()
                        )
    assert len(fitted_answers) == 40  # every item decided
    # Not refitted on each decision: once the fit has seen enough answers it is reused
    # (refits when the answers grew ~5 %, at most every 10 decisions here).
    refits = len(set(fitted_answers))
    assert 3 <= refits < len(fitted_answers)

    svc.agreement(pid)  # GetAgreement refreshes the matrices over the whole project
    with svc.rt.engine.connect() as conn:
        everything = consensus.human_votes(conn, ids)
        stored = consensus.load_model(conn, pid)
    assert stored is not None and stored.answers == len(everything) == 120
    full = qc.dawid_skene(everything)
    project = svc.get_project(pid)
    with write_transaction(svc.rt.engine) as conn:
        for item_id in ids:
            item = svc.rt.items.load(conn, pid, item_id)
            decided = consensus.decide(conn, project, item, refit_every=10_000)
            label, posterior = full[item_id]
            assert decided.value == Classes((label,)), item_id
            assert abs(decided.confidence - posterior) < 0.02
    # Dawid-Skene sees through the adversary better than counting votes would.
    right = sum(full[i][0] == truth[i] for i in ids)
    assert right >= 36
