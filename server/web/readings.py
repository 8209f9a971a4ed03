"""Service-centre pages: readings (being built)."""

from . import bp  # noqa: F401
