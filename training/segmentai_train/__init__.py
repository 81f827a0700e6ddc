"""SegmentAI training package: trains and fine-tunes the core's models, with or without Slicer."""

__version__ = "0.1.0"
