"""The lineage tests run the trainer beside the data service (and start the others)."""

from ..trainer.conftest import trainer_harness

__all__ = ["trainer_harness"]
