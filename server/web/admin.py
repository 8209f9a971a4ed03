"""Service-centre pages: admin (being built)."""

from . import bp  # noqa: F401
