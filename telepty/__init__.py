"""telepty: deliver prompts into interactive AI agent CLIs, whole and at the right moment."""

__version__ = "0.2.0"
