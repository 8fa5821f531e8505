"""Integration tests run against real parts: a SeaweedFS S3 server shared by the session."""

from atlas_core.testing.s3 import s3_settings, seaweed_server  # noqa: F401
