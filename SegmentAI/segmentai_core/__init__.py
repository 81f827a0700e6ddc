"""SegmentAI core: Slicer-free volumes, geometry, model packages, inference, metrics and CLI.

Nothing in this package imports ``slicer``, ``qt``, ``ctk`` or ``vtk``; the MRML layer and the
Slicer module sit on top of it. Heavy dependencies (torch, MONAI) are imported lazily by the
modules that need them so that ``import segmentai_core`` stays cheap.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
