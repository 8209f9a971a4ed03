"""Service-centre pages: jobs (being built)."""

from . import bp  # noqa: F401
