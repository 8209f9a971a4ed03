"""Staff API: jobs (being built)."""

from . import bp  # noqa: F401
