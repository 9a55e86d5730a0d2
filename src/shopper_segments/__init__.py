"""shopper-segments: clickstream events to named behavioural shopper segments, inside the warehouse."""

__version__ = "0.1.0"
