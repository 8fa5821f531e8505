"""Shared fixtures: a real SeaweedFS S3 server per session, SQLite + PostgreSQL databases."""

pytest_plugins = ["atlas_core.testing.s3", "atlas_core.testing.db"]
