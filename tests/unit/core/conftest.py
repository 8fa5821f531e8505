from atlas_core.testing.db import db_engine, db_url, postgres_schema_url  # noqa: F401

# The artifact store contract suite also runs against a real SeaweedFS.
from atlas_core.testing.s3 import s3_settings, seaweed_server  # noqa: F401
