"""The trainer's job kinds: the table the shared job runner (:class:`atlas_core.jobs.JobTable`)
runs in subprocesses. A training job resumes its study after a service restart."""

from __future__ import annotations

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.jobs import JobKind, JobTable

KIND_TRAIN = "train"
# The study's name is stored beside the spec (an extra, not a proto field): spec_to_json(...,
# study_name=...) keeps it under this key, and train() receives it as ``study_name``.
STUDY_KEY = "_study_name"

JOBS = JobTable(
    "trainer",
    [
        # timed: the budget counts from the job process's start, imports of the ML stack too.
        JobKind(
            KIND_TRAIN,
            "atlas_trainer.job_work:train",
            pb.TrainingJobSpec,
            resumable=True,
            timed=True,
        ),
    ],
    runtime="atlas_trainer.runtime:open_runtime",
)
