from atlas_core.testing.db import db_engine, db_url, postgres_schema_url  # noqa: F401
