"""FieldSync handheld: the client core (offline store, domain operations, sync engine), a command-line
interface (`python -m pda_client`) and the Kivy app, all over the same core."""

from .core import Handheld
from .errors import HandheldError

__all__ = ["Handheld", "HandheldError"]
