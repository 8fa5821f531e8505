"""`python -m atlas_core.console`: serve the web console (settings from ATLAS_CONSOLE_* and/or
ATLAS_CONSOLE_CONFIG)."""

from __future__ import annotations

from atlas_core.console.config import ConsoleSettings
from atlas_core.web import serve_web_app

ENV_PREFIX = "ATLAS_CONSOLE"


def main() -> None:
    from atlas_core.console.app import create_app

    serve_web_app(ConsoleSettings, env_prefix=ENV_PREFIX, name="console", create_app=create_app)


if __name__ == "__main__":
    main()
