"""The migration Job (deploy/k8s/overlays/prod): `python /usr/local/bin/atlas-migrate data
serving labeling` brings each named service's metadata database to this image's schema and
exits; a failure exits 2 with one line naming what to fix. Services also migrate when they
start (serialized by a database lock), so the Job only moves that work ahead of a rollout."""

import importlib
import os
import sys

from atlas_core.config import load_settings
from atlas_core.errors import AtlasError

for name in sys.argv[1:]:
    config = importlib.import_module(f"atlas_{name}.config")
    settings_cls = getattr(config, f"{name.capitalize()}Settings")
    try:
        settings = load_settings(settings_cls, env_prefix=f"ATLAS_{name.upper()}", env=os.environ)
        importlib.import_module(f"atlas_{name}.runtime").open_runtime(settings)
    except AtlasError as exc:
        sys.exit(f"atlas-migrate: {name}: {exc.message}")
    print(f"atlas-migrate: {name}: schema up to date", flush=True)
