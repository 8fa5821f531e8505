"""`make demo`: start the suite on embedded defaults, run the platform's loop on real data,
print what happened, stop the suite.

Each implemented service contributes a step (see STEPS); the suite is always stopped, even
when a step fails.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from atlas_core.launcher import Launcher, RunState, implemented_services

sys.path.insert(0, str(Path(__file__).parent))
import data_step  # noqa: E402
import graph_step  # noqa: E402
import labeling_step  # noqa: E402
import loop_step  # noqa: E402
import serving_step  # noqa: E402
import trainer_step  # noqa: E402

# Steps run in this order (the trainer's bundle feeds the serving step) and share what they
# made (dataset refs, model bundles) through one dict; each needs the services named with it.
Step = Callable[[RunState, Path, dict[str, Any]], Any]
STEPS: dict[str, tuple[Step, frozenset[str]]] = {
    "data": (data_step.run, frozenset({"data"})),
    "trainer": (trainer_step.run, frozenset({"trainer"})),
    "serving": (serving_step.run, frozenset({"serving"})),
    "labeling": (labeling_step.run, frozenset({"labeling"})),
    "loop": (loop_step.run, frozenset({"data", "trainer", "serving", "labeling"})),
    "graph": (graph_step.run, frozenset({"graph"})),
}


def main() -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="atlas-demo-"))
    launcher = Launcher(data_dir, s3_port=0, base_port=0)
    print(f"ATLAS demo -- embedded defaults (SeaweedFS S3, SQLite, LMDB) in {data_dir}")
    started = time.monotonic()
    try:
        state = launcher.up(echo=lambda line: print(line, flush=True))
        print("\nsuite status:")
        for proc, status in launcher.status():
            print(f"  {proc.name:<12} {status:<10} {proc.address}")
        served = {s.name for s in implemented_services()}
        shared: dict[str, Any] = {}
        for name, (step, needs) in STEPS.items():
            if needs <= served:
                print(f"\n== {name} ==")
                step(state, data_dir, shared)
        if not served:
            print("\n(no service is implemented yet: the suite is the object store alone)")
    finally:
        print("\nstopping the suite ...")
        launcher.down(echo=lambda line: print(line, flush=True))
    print(f"demo finished in {time.monotonic() - started:.1f}s")
    print("next: `.venv/bin/atlas up` and the five-minute tour in README.md; docs/ per service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
