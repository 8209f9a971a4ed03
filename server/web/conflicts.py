"""Service-centre pages: conflicts (being built)."""

from . import bp  # noqa: F401
