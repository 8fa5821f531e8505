"""Developer tools run from the repository (``python -m atlas_core.tools.<tool>``)."""
