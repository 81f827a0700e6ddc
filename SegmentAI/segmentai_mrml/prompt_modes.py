"""The prompt modes of the panel, shared by the desktop module and the web app: names, polarity, colours.

A mode is what a click in a slice view means while it is on: an object or background point, a box
corner, or a point of an object or background scribble. Its value (``"positive"``, ``"box"``,
``"scribble-negative"``, ...) is what the front ends store (the web app's ``sai_click_mode``); no mode
(``None``, or ``"off"`` on the web) is the views' ordinary mouse mode. Pure Python, so the Slicer module
file and the web app import it without loading MRML.
"""

from __future__ import annotations

import enum
from typing import Optional, Tuple, Union

__all__ = ["BACKGROUND_COLOR", "BOX_COLOR", "OBJECT_COLOR", "PromptMode"]

Color = Tuple[float, float, float]
OBJECT_COLOR: Color = (0.2, 0.9, 0.2)
"""Object (positive) prompts: green."""
BACKGROUND_COLOR: Color = (1.0, 0.25, 0.25)
"""Background (negative) prompts: red."""
BOX_COLOR: Color = (1.0, 0.8, 0.1)
"""Boxes: amber."""


class PromptMode(str, enum.Enum):
    """One kind of prompt placed in the views (a ``str``: ``PromptMode.BOX == "box"``)."""

    POSITIVE = "positive"
    NEGATIVE = "negative"
    BOX = "box"
    SCRIBBLE_POSITIVE = "scribble-positive"
    SCRIBBLE_NEGATIVE = "scribble-negative"

    @classmethod
    def parse(cls, value: Union["PromptMode", str, None]) -> Optional["PromptMode"]:
        """The mode named ``value``; None for no mode (``None``, ``""`` or ``"off"``)."""
        if value is None or value in ("", "off"):
            return None
        return cls(value)

    @classmethod
    def point(cls, positive: bool) -> "PromptMode":
        return cls.POSITIVE if positive else cls.NEGATIVE

    @classmethod
    def scribble(cls, positive: bool) -> "PromptMode":
        return cls.SCRIBBLE_POSITIVE if positive else cls.SCRIBBLE_NEGATIVE

    @property
    def kind(self) -> str:
        """``"point"``, ``"box"`` or ``"scribble"``."""
        return "box" if self is PromptMode.BOX else "scribble" if self.value.startswith("scribble") else "point"

    @property
    def positive(self) -> bool:
        """True for object prompts (a box is one: it bounds the object), False for background ones."""
        return self in (PromptMode.POSITIVE, PromptMode.BOX, PromptMode.SCRIBBLE_POSITIVE)

    @property
    def color(self) -> Color:
        if self is PromptMode.BOX:
            return BOX_COLOR
        return OBJECT_COLOR if self.positive else BACKGROUND_COLOR

    @property
    def title(self) -> str:
        """What the panel calls it: ``Object click``, ``Background scribble``, ``Box``, ..."""
        if self is PromptMode.BOX:
            return "Box"
        side = "Object" if self.positive else "Background"
        return f"{side} {'scribble' if self.kind == 'scribble' else 'click'}"

    @property
    def node_name(self) -> str:
        """The name of the markups nodes this mode places."""
        if self is PromptMode.BOX:
            return "SegmentAI box"
        side = "object" if self.positive else "background"
        return f"SegmentAI {side} {'scribble' if self.kind == 'scribble' else 'points'}"

    def result_message(self, changed: int) -> str:
        """The panel's line after a prompt of this mode changed ``changed`` voxels."""
        return f"{self.title}: {changed} voxels changed" if changed else f"{self.title}: no change"
