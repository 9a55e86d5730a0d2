"""Demo clickstream files in the REES46 format, with the true archetype of every shopper.

The stages depend one way: base <- shoppers <- catalogue <- simulation, writer <- events;
calibration measures a generation against the real file's figures (docs/calibration.md).
"""

from .base import COLUMNS, EVENT_TYPES, HEADER
from .events import add_arguments, generate_events, run
from .shoppers import ARCHETYPES, BACKGROUND, CALIBRATED_ARCHETYPE_SHARE, FLAVOURS, TRUTH_LABELS, WORLDS
from .writer import TRUTH_DIR, TRUTH_FILE, GeneratedEvents

__all__ = [
    "ARCHETYPES", "BACKGROUND", "CALIBRATED_ARCHETYPE_SHARE", "COLUMNS", "EVENT_TYPES", "FLAVOURS", "HEADER",
    "TRUTH_DIR", "TRUTH_FILE", "TRUTH_LABELS", "WORLDS", "GeneratedEvents", "add_arguments", "generate_events", "run",
]
