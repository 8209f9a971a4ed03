"""Service-centre pages: customers (being built)."""

from . import bp  # noqa: F401
