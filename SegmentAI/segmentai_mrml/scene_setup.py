"""A MRML scene with the module logics that colour tables, markups and segmentations rely on.

Inside Slicer the application creates these; on the bare ``slicer-core`` wheel nothing does,
and colour nodes, markups storage or closed-surface conversion then fail. :class:`MRMLContext`
wires the same logics onto an application logic so tests and the web app see a Slicer-like scene.
"""

from __future__ import annotations

from typing import Dict, Optional

import slicer
import vtk

__all__ = ["MRMLContext", "create_context"]


class MRMLContext:
    """A scene plus its application logic and the Colors/Volumes/Markups/Segmentations logics.

    The context keeps Python references to every logic: VTK would otherwise free them while the
    application logic still points at them.
    """

    def __init__(self, scene: Optional[slicer.vtkMRMLScene] = None) -> None:
        self.scene = scene if scene is not None else slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().SetMRMLScene(self.scene)
        self.app_logic.GetColorLogic().AddDefaultColorNodes()
        # Segment-editor and slice logics look these collections up; empty ones are enough headless.
        self.app_logic.SetSliceLogics(vtk.vtkCollection())
        self.app_logic.SetViewLogics(vtk.vtkCollection())
        self.logics: Dict[str, object] = {}
        for name, cls in (
            ("Colors", slicer.vtkMRMLColorLogic),
            ("Volumes", slicer.vtkSlicerVolumesLogic),
            ("Markups", slicer.vtkSlicerMarkupsLogic),
            ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
        ):
            logic = cls()
            logic.SetMRMLApplicationLogic(self.app_logic)
            logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(name, logic)
            self.logics[name] = logic

    @property
    def volumes_logic(self) -> slicer.vtkSlicerVolumesLogic:
        return self.logics["Volumes"]

    @property
    def segmentations_logic(self) -> slicer.vtkSlicerSegmentationsModuleLogic:
        return self.logics["Segmentations"]

    def close(self) -> None:
        """Clear the scene and detach the logics (call before dropping the context)."""
        self.scene.Clear(True)
        for logic in self.logics.values():
            logic.SetMRMLScene(None)
        self.app_logic.SetMRMLScene(None)


def create_context() -> MRMLContext:
    """A fresh scene with the module logics set up (for tests, batch scripts and the web app)."""
    return MRMLContext()
