"""The scene fixture shared by the MRML layer's test cases: labels, phantoms, the tiny model package
(:mod:`segmentai_core.testing`, the one pytest's conftest builds too), and :class:`_SceneCase` (a fresh
slicer-core scene per test)."""

from __future__ import annotations

import shutil
import tempfile
import unittest
from pathlib import Path

import numpy as np
from segmentai_core.geometry import Geometry
from segmentai_core.labels import Code, SegmentLabel, Terminology
from segmentai_core.phantoms import blob_phantom, rotation_matrix
from segmentai_core.testing import make_tiny_package

__all__ = ["BRAIN", "LABELS", "make_tiny_package", "oblique_phantom", "resample_nearest", "_SceneCase"]

BRAIN = Terminology(Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "12738006", "Brain"))
LABELS = [SegmentLabel(1, "Brain", (0.9, 0.7, 0.6), BRAIN), SegmentLabel(2, "Lesion", (0.2, 0.4, 1.0)),
          SegmentLabel(3, "Never present", (0.1, 0.9, 0.1))]


def oblique_phantom(shape=(24, 30, 28)):
    """An oblique, anisotropic blob image and its mask (the grid that catches axis-order bugs)."""
    direction = rotation_matrix([1.0, 2.0, 0.5], 0.5) @ np.diag([1.0, -1.0, 1.0])
    return blob_phantom(shape=shape, spacing=(0.9, 1.3, 2.2), direction=direction, origin=(12.0, -30.0, 5.5))


def resample_nearest(volume, geometry: Geometry) -> np.ndarray:
    """``volume``'s voxels at the voxel centres of ``geometry`` (grids that share voxel centres)."""
    k, j, i = np.indices(geometry.shape).reshape(3, -1)
    ijk = volume.geometry.lps_to_ijk(geometry.ijk_to_lps(np.stack([i, j, k], axis=-1)))
    kji = Geometry.ijk_to_array_index(ijk)
    return volume.array[kji[:, 0], kji[:, 1], kji[:, 2]].reshape(geometry.shape)


class _SceneCase(unittest.TestCase):
    """A fresh scene (with module logics) and a temporary folder per test."""

    @classmethod
    def setUpClass(cls) -> None:
        import torch

        cls._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # CI has 2 cores and other work running

    @classmethod
    def tearDownClass(cls) -> None:
        import torch

        torch.set_num_threads(cls._torch_threads)  # as the caller had it (Slicer's self-test runs in the app)

    def setUp(self) -> None:
        from segmentai_mrml.scene_setup import create_context

        self.context = create_context()
        self.scene = self.context.scene
        self.tmp = Path(tempfile.mkdtemp(prefix="segmentai-mrml-"))

    def tearDown(self) -> None:
        self.context.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add_volume(self, volume, name: str = "image"):
        from segmentai_mrml.volume_nodes import add_volume_node

        return add_volume_node(self.scene, volume, name)

    def segmentation_nodes(self) -> int:
        return self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")

    def refine_scene(self, lesion_inside_missed_part: bool = False):
        """An oblique volume, a Brain segment missing the k < 12 part of the blob, and a locked Lesion
        segment: the top of the blob, or (``lesion_inside_missed_part``) a piece of the missed part."""
        from segmentai_mrml.segmentation_nodes import add_segmentation_node

        image, mask = oblique_phantom()
        blob = mask.array > 0
        k, _, i = np.indices(blob.shape)
        labels = np.zeros(blob.shape, np.uint8)
        labels[blob & (k >= 12)] = 1  # the user's click should bring back the k < 12 part
        if lesion_inside_missed_part:
            labels[blob & (k < 12) & (i >= 15)] = 2
        else:
            labels[blob & (k >= 20)] = 2
        node = self.add_volume(image)
        segmentation = add_segmentation_node(self.scene, image.with_array(labels), LABELS, node)
        ids = segmentation.GetSegmentation()
        return image, blob, labels, node, segmentation, ids.GetSegmentIdBySegmentName("Brain"), \
            ids.GetSegmentIdBySegmentName("Lesion")
