"""Service-centre pages: analysis (being built)."""

from . import bp  # noqa: F401
