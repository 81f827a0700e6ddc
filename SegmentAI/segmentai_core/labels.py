"""Segment labels: value, name, colour and (where known) a DICOM/SNOMED terminology entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

__all__ = ["Code", "Terminology", "SegmentLabel"]


@dataclass(frozen=True)
class Code:
    """A coded concept, e.g. ``Code("SCT", "12738006", "Brain")``."""

    scheme: str
    value: str
    meaning: str

    def to_slicer(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


@dataclass(frozen=True)
class Terminology:
    """DICOM segmentation terminology (category, type, optional modifier and anatomic region)."""

    category: Code
    type: Code
    type_modifier: Optional[Code] = None
    anatomic_region: Optional[Code] = None

    def to_slicer(self) -> str:
        """Slicer's ``SegmentN_Tags`` TerminologyEntry string (tilde separated)."""
        empty = "^^"
        return "~".join(
            [
                "Segmentation category and type - 3D Slicer General Anatomy list",
                self.category.to_slicer(),
                self.type.to_slicer(),
                self.type_modifier.to_slicer() if self.type_modifier else empty,
                "Anatomic codes - DICOM master list",
                self.anatomic_region.to_slicer() if self.anatomic_region else empty,
                empty,
            ]
        )

    @staticmethod
    def from_dict(data: dict) -> "Terminology":
        def code(key: str) -> Optional[Code]:
            item = data.get(key)
            return Code(str(item["scheme"]), str(item["value"]), str(item["meaning"])) if item else None

        category, type_ = code("category"), code("type")
        if category is None or type_ is None:
            raise ValueError("terminology needs 'category' and 'type'")
        return Terminology(category, type_, code("type_modifier"), code("anatomic_region"))

    def to_dict(self) -> dict:
        out = {}
        for key in ("category", "type", "type_modifier", "anatomic_region"):
            item = getattr(self, key)
            if item is not None:
                out[key] = {"scheme": item.scheme, "value": item.value, "meaning": item.meaning}
        return out


@dataclass(frozen=True)
class SegmentLabel:
    """One foreground label of a label map. ``color`` is RGB in 0..1."""

    value: int
    name: str
    color: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    terminology: Optional[Terminology] = field(default=None)

    @staticmethod
    def default_for(value: int) -> "SegmentLabel":
        """A label with a generic name and a colour from a fixed palette (for unknown values)."""
        palette = [
            (0.95, 0.35, 0.25), (0.3, 0.7, 0.3), (0.25, 0.5, 0.95), (0.95, 0.8, 0.2),
            (0.7, 0.35, 0.85), (0.2, 0.8, 0.8), (0.9, 0.5, 0.7), (0.6, 0.45, 0.3),
        ]
        return SegmentLabel(value, f"Segment_{value}", palette[(value - 1) % len(palette)])
