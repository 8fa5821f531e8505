"""`python -m atlas_labeling.web`: serve the annotator web app (settings from
ATLAS_LABELING_WEB_* and/or ATLAS_LABELING_WEB_CONFIG)."""

from __future__ import annotations

from atlas_core.web import serve_web_app
from atlas_labeling.web.config import LabelingWebSettings

ENV_PREFIX = "ATLAS_LABELING_WEB"


def main() -> None:
    from atlas_labeling.web.app import create_app

    serve_web_app(
        LabelingWebSettings, env_prefix=ENV_PREFIX, name="labeling-web", create_app=create_app
    )


if __name__ == "__main__":
    main()
