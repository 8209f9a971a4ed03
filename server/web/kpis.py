"""Service-centre pages: kpis (being built)."""

from . import bp  # noqa: F401
