"""Staff API: readings (being built)."""

from . import bp  # noqa: F401
