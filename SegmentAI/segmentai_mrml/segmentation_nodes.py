"""Core label maps ↔ segmentation nodes: one segment per label, with name, colour and terminology.

A result becomes one shared binary-labelmap layer (each segment keeps its label value), on the
reference volume's exact grid: the layer's image-to-world matrix is the volume's IJKToRAS and the
segmentation's reference geometry is set from the volume node, so Slicer never resamples it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Dict, List, Optional

import numpy as np
import slicer
import vtk
from segmentai_core.errors import InputError
from segmentai_core.geometry import Geometry
from segmentai_core.labels import SegmentLabel
from segmentai_core.volume import Volume
from vtk.util import numpy_support

from .volume_nodes import geometry_from_node, matrix_to_vtk

__all__ = [
    "LABEL_VALUE_TAG",
    "MODEL_ATTRIBUTE",
    "add_segmentation_node",
    "labelmap_from_segmentation",
    "oriented_image",
    "reference_image",
    "segment_array",
    "segment_ids_by_value",
    "segment_labels",
    "segment_tag",
    "set_segment_from_array",
]

LABEL_VALUE_TAG = "SegmentAI.LabelValue"
"""Segment tag holding the model's label value (kept through ``.seg.nrrd`` save and load)."""

MODEL_ATTRIBUTE = "SegmentAI.Model"
"""Segmentation-node attribute naming the model package (``id@version``) that produced it."""

_BINARY = "Binary labelmap"


def oriented_image(array: np.ndarray, geometry: Geometry) -> slicer.vtkOrientedImageData:
    """A ``vtkOrientedImageData`` copy of an integer ``[k, j, i]`` array on ``geometry``."""
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry shape {geometry.shape}")
    dtype = np.uint8 if array.size == 0 or (array.min() >= 0 and array.max() <= 255) else np.int16
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*geometry.size_ijk)
    flat = np.ascontiguousarray(array, dtype=dtype).ravel()
    scalars = numpy_support.numpy_to_vtk(flat, deep=True, array_type=numpy_support.get_vtk_array_type(dtype))
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(matrix_to_vtk(geometry.ijk_to_ras_matrix()))
    return image


def reference_image(node) -> slicer.vtkOrientedImageData:
    """An empty oriented image with the grid (extent and IJKToRAS) of volume ``node``."""
    geometry = geometry_from_node(node)
    image = slicer.vtkOrientedImageData()
    image.SetExtent(0, geometry.size_ijk[0] - 1, 0, geometry.size_ijk[1] - 1, 0, geometry.size_ijk[2] - 1)
    image.SetImageToWorldMatrix(matrix_to_vtk(geometry.ijk_to_ras_matrix()))
    return image


def segment_tag(segment, tag: str) -> str:
    """A segment tag's value, or "" when the segment has no such tag."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(tag, value) else ""


def _set_terminology(segment, label: SegmentLabel) -> None:
    if label.terminology is None:
        return
    entry = label.terminology.to_slicer()
    segment.SetTag(segment.GetTerminologyEntryTagName(), entry)
    if hasattr(segment, "SetTerminology"):  # Slicer ≥ 5.9 keeps terminology as a segment property too
        segment.SetTerminology(entry)


def add_segmentation_node(scene, labelmap: Volume, labels: Sequence[SegmentLabel], reference_node,
                          name: Optional[str] = None, model_id: Optional[str] = None, into=None):
    """Add a segmentation node with one segment per label of ``labelmap``, on ``reference_node``'s grid.

    Every label gets a segment (an empty one if no voxel has its value) so the panel always shows
    the model's full label list. The node follows the reference volume's parent transform.
    ``into``: an existing segmentation node whose segments are replaced instead of adding a node.
    """
    reference_geometry = geometry_from_node(reference_node)
    if not reference_geometry.same_grid(labelmap.geometry):
        raise InputError(f"the label map's grid does not match volume '{reference_node.GetName()}'")
    image = oriented_image(labelmap.array, reference_geometry)
    if into is not None:
        node = into
        node.GetSegmentation().RemoveAllSegments()
    else:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{reference_node.GetName()} segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
    node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), reference_node.GetID())
    if reference_node.GetParentTransformNode() is not None:
        node.SetAndObserveTransformNodeID(reference_node.GetParentTransformNode().GetID())
    if model_id:
        node.SetAttribute(MODEL_ATTRIBUTE, model_id)
    segmentation = node.GetSegmentation()
    was_modifying = node.StartModify()
    try:
        for label in labels:
            segment = slicer.vtkSegment()
            segment.SetName(label.name)
            segment.SetColor(*label.color)
            segment.SetLabelValue(int(label.value))
            segment.SetTag(LABEL_VALUE_TAG, str(int(label.value)))
            _set_terminology(segment, label)
            segment.AddRepresentation(_BINARY, image)  # the same image object: one shared layer
            segmentation.AddSegment(segment, segmentation.GenerateUniqueSegmentID(label.name))
    finally:
        node.EndModify(was_modifying)
    return node


def segment_ids_by_value(node) -> Dict[int, str]:
    """Label value → segment ID, from the SegmentAI tag (or the layer's label value when untagged)."""
    segmentation = node.GetSegmentation()
    out: Dict[int, str] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        text = segment_tag(segment, LABEL_VALUE_TAG)
        out[int(text) if text else index + 1] = segment_id
    return out


def segment_labels(node) -> List[SegmentLabel]:
    """The node's segments as core labels (value, name, colour; terminology parsed when present)."""
    from segmentai_core.io.segmentation_io import parse_terminology

    segmentation = node.GetSegmentation()
    labels = []
    for value, segment_id in segment_ids_by_value(node).items():
        segment = segmentation.GetSegment(segment_id)
        entry = segment_tag(segment, segment.GetTerminologyEntryTagName())
        labels.append(SegmentLabel(value, segment.GetName(), tuple(segment.GetColor()),
                                   parse_terminology(entry) if entry else None))
    return labels


def segment_array(node, segment_id: str, reference_node) -> np.ndarray:
    """Binary ``[k, j, i]`` uint8 mask of one segment on the grid of volume ``reference_node``."""
    if node.GetSegmentation().GetSegment(segment_id) is None:
        raise InputError(f"segmentation '{node.GetName()}' has no segment '{segment_id}'")
    if not node.GetSegmentation().ContainsRepresentation(_BINARY):
        node.CreateBinaryLabelmapRepresentation()
    binary = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(segment_id, binary)
    reference = reference_image(reference_node)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        binary, reference, resampled, False, True)
    size = reference_node.GetImageData().GetDimensions()
    scalars = resampled.GetPointData().GetScalars() if resampled.GetPointData() else None
    if scalars is None or resampled.GetNumberOfPoints() != int(np.prod(size)):
        return np.zeros(tuple(reversed(size)), dtype=np.uint8)  # empty segment
    return (numpy_support.vtk_to_numpy(scalars).reshape(tuple(reversed(size))) > 0).astype(np.uint8)


def labelmap_from_segmentation(node, reference_node, segment_ids: Optional[Sequence[str]] = None) -> Volume:
    """A core label map of the segments (each at its label value) on ``reference_node``'s grid.

    Later segments win where segments overlap, as in Slicer's own export.
    """
    geometry = geometry_from_node(reference_node)
    by_value = segment_ids_by_value(node)
    wanted = set(segment_ids) if segment_ids is not None else set(by_value.values())
    array = np.zeros(geometry.shape, dtype=np.uint8 if max(by_value, default=0) <= 255 else np.int16)
    for value, segment_id in by_value.items():
        if segment_id in wanted:
            array[segment_array(node, segment_id, reference_node) > 0] = value
    return Volume(array, geometry)


def set_segment_from_array(node, segment_id: str, mask: np.ndarray, reference_node) -> None:
    """Replace one segment's voxels with the binary ``[k, j, i]`` ``mask`` on ``reference_node``'s grid."""
    geometry = geometry_from_node(reference_node)
    image = oriented_image((np.asarray(mask) > 0).astype(np.uint8), geometry)
    ok = slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    if not ok:
        raise InputError(f"could not update segment '{segment_id}' of '{node.GetName()}'")

