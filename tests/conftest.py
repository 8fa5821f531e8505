"""Shared fixtures: a real SeaweedFS S3 server per session, SQLite + PostgreSQL databases."""

pytest_plugins = ["tests.support.s3", "tests.support.db"]
