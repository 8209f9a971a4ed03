"""Staff API: analysis (being built)."""

from . import bp  # noqa: F401
