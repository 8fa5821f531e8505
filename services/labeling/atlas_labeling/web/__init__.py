"""The annotator web app (`python -m atlas_labeling.web`): a gRPC client of the labeling
service with Jinja2 pages and vendored htmx; no labeling logic of its own."""

from atlas_labeling.web.app import create_app
from atlas_labeling.web.config import LabelingTarget, LabelingWebSettings

__all__ = ["LabelingTarget", "LabelingWebSettings", "create_app"]
