"""Staff API: customers (being built)."""

from . import bp  # noqa: F401
