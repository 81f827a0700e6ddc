"""Slicer self-test cases: points and boxes placed as markups refine the selected segment
(shared by pytest on slicer-core and Slicer's ctest, like :mod:`.testing`)."""

from __future__ import annotations

import numpy as np
from segmentai_core.errors import InputError
from segmentai_core.phantoms import rotation_matrix

from ..prompt_modes import PromptMode
from .scene import _SceneCase, oblique_phantom

__all__ = ["PromptPlacementTest"]


class PromptPlacementTest(_SceneCase):
    """Points and boxes placed as markups (the MRML events of a click in a slice view) refine the segment."""

    def prompt_scene(self):
        """The refine scene with a non-empty locked Lesion inside the part of the blob that Brain misses."""
        return self.refine_scene(lesion_inside_missed_part=True)

    def workflow(self):
        from segmentai_core.interaction import InteractionSession, RandomWalkerPredictor
        from segmentai_mrml.logic import SegmentationLogic
        from segmentai_mrml.workflow import PanelWorkflow

        # The placement plumbing is tested with the deterministic classical predictor; the model's
        # accuracy has its own tests and benchmark.
        return PanelWorkflow(SegmentationLogic(self.scene), app_logic=self.context.app_logic,
                             session_factory=lambda: InteractionSession(RandomWalkerPredictor()))

    def placement(self):
        """(active place node ID, its class, whether the views are in place mode)."""
        interaction = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        selection = self.scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
        return (selection.GetActivePlaceNodeID(), selection.GetActivePlaceNodeClassName(),
                interaction.GetCurrentInteractionMode() == interaction.Place)

    def test_points_placed_in_the_views_refine_the_segment_and_undo_restores(self) -> None:
        from segmentai_mrml.segmentation_nodes import segment_array

        image, blob, labels, node, segmentation, brain, lesion = self.prompt_scene()
        workflow = self.workflow()
        placed, counts = [], []

        def on_prompt(mode, position) -> None:
            placed.append((position, mode.positive))
            counts.append(workflow.refine(segmentation, brain, node, mode, position)[0])

        prompts = workflow.prompts(on_prompt)
        try:
            prompts.place(PromptMode.POSITIVE)
            positive_node = prompts.node(True)
            self.assertEqual(self.placement(), (positive_node.GetID(), "vtkMRMLMarkupsFiducialNode", True))
            k, _, i = np.indices(blob.shape)
            missing = np.argwhere(blob & (k < 12) & (i < 13))
            kk, jj, ii = missing[len(missing) // 2]
            # Less than half a voxel off the voxel centre, along the oblique voxel axes: still that voxel.
            offset = image.geometry.direction_matrix @ (np.array([0.3, -0.4, 0.35]) * image.geometry.spacing)
            position = image.geometry.ijk_to_ras([ii, jj, kk]) + offset * np.array([-1.0, -1.0, 1.0])
            positive_node.AddControlPoint(*map(float, position))  # what a click in a slice view adds
            self.assertEqual(len(placed), 1)
            np.testing.assert_allclose(placed[0][0], position, atol=1e-9)
            self.assertTrue(placed[0][1])
            after = segment_array(segmentation, brain, node)
            self.assertGreater(counts[0], 0)
            self.assertEqual(int(after[kk, jj, ii]), 1)
            self.assertGreater(int(after.sum()), int((labels == 1).sum()))
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
            self.assertEqual(int((after & (labels == 2)).sum()), 0)
            self.assertTrue(workflow.can_undo_redo())
            workflow.undo_redo()
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), (labels == 1).astype(np.uint8))

            prompts.place(PromptMode.NEGATIVE)
            negative_node = prompts.node(False)
            self.assertEqual(self.placement()[0], negative_node.GetID())
            inside = np.argwhere(labels == 1)
            kk, jj, ii = inside[len(inside) // 2]
            negative_node.AddControlPoint(*map(float, image.geometry.ijk_to_ras([ii, jj, kk])))
            self.assertEqual(placed[-1][1], False)
            self.assertEqual(int(segment_array(segmentation, brain, node)[kk, jj, ii]), 0)
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
            workflow.undo_redo()
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), (labels == 1).astype(np.uint8))

            prompts.place(None)
            self.assertFalse(self.placement()[2])
            prompts.clear()
            self.assertEqual((positive_node.GetNumberOfControlPoints(), negative_node.GetNumberOfControlPoints()),
                             (0, 0))
        finally:
            workflow.close()
        self.assertEqual(self.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode"), 0)

    def add_slice_view(self, axes_ras: np.ndarray) -> None:
        """A red slice view whose axes are ``axes_ras`` (columns), as Slicer's views after "rotate to volume plane"."""
        import slicer

        from segmentai_mrml.volume_nodes import matrix_to_vtk

        view = slicer.vtkMRMLSliceNode()
        view.SetLayoutName("Red")
        view.SetSingletonTag("Red")
        self.scene.AddNode(view)
        slice_to_ras = np.eye(4)
        slice_to_ras[:3, :3] = axes_ras
        view.GetSliceToRAS().DeepCopy(matrix_to_vtk(slice_to_ras))
        view.UpdateMatrices()

    def test_box_drawn_on_one_slice_is_a_2d_box(self) -> None:
        from segmentai_mrml.box_prompt import FLAT_THICKNESS_MM, roi_box_ijk
        from segmentai_mrml.segmentation_nodes import segment_array

        image, blob, labels, node, segmentation, brain, lesion = self.prompt_scene()
        ijk_to_ras = image.geometry.ijk_to_ras_matrix()[:3, :3]
        self.add_slice_view(ijk_to_ras / np.linalg.norm(ijk_to_ras, axis=0))
        workflow = self.workflow()
        boxes, counts = [], []

        def on_prompt(mode, roi) -> None:
            self.assertIs(mode, PromptMode.BOX)
            boxes.append(roi)
            counts.append(workflow.refine(segmentation, brain, node, mode, roi)[0])

        prompts = workflow.prompts(on_prompt)
        try:
            prompts.place(PromptMode.BOX)
            roi = prompts.boxes.pending
            self.assertEqual(self.placement(), (roi.GetID(), "vtkMRMLMarkupsROINode", True))
            # Two opposite corners clicked on voxel slice k = 11, left of the locked Lesion.
            (i0, j0), (i1, j1), k0 = (8, 17), (13, 11), 11
            for corner in ((i0, j0, k0), (i1, j1, k0)):
                roi.AddControlPoint(*map(float, image.geometry.ijk_to_ras(corner)))
            self.assertEqual(boxes, [roi])
            self.assertAlmostEqual(min(roi.GetSize()), FLAT_THICKNESS_MM)  # Slicer's padding undone
            lo, hi, flat = roi_box_ijk(roi, node)
            self.assertEqual(flat, 2)
            np.testing.assert_allclose(lo, [i0, j1, k0], atol=1e-6)
            np.testing.assert_allclose(hi, [i1, j0, k0], atol=1e-6)
            before = (labels == 1).astype(np.uint8)
            after = segment_array(segmentation, brain, node)
            self.assertGreater(counts[0], 0)
            self.assertEqual(int(after[k0, 14, 10]), 1)  # the box's centre joined the segment
            rectangle = np.zeros(blob.shape[1:], dtype=bool)
            rectangle[j1:j0 + 1, i0:i1 + 1] = True
            changed = after != before
            self.assertTrue(changed[k0][rectangle].any())
            self.assertFalse(changed[k0][~rectangle].any(), "on its slice, a 2D box changes only its rectangle")
            self.assertTrue((blob[k0] & ~rectangle & (labels[k0] == 0)).any())  # there was blob to take outside
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
            # Placing goes on: a fresh ROI waits for the next box; undo restores the segment.
            self.assertIsNot(prompts.boxes.pending, roi)
            self.assertEqual(self.placement()[0], prompts.boxes.pending.GetID())
            workflow.undo_redo()
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), before)
            prompts.place(None)
            self.assertEqual(prompts.boxes.nodes, [roi])
            self.assertIsNone(prompts.boxes.pending)
        finally:
            workflow.close()
        self.assertEqual(self.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode"), 0)

    def test_box_on_a_ras_slice_of_an_oblique_volume_goes_on_the_nearest_voxel_slice(self) -> None:
        from segmentai_mrml.box_prompt import PromptBoxes, roi_box_ijk

        image, _ = oblique_phantom()
        node = self.add_volume(image)
        boxes = PromptBoxes(self.scene, lambda roi: None)  # no slice views: the ROI is RAS-aligned
        try:
            boxes.place()
            roi = boxes.pending
            centre = image.geometry.ijk_to_ras([13.0, 14.0, 11.0])
            for corner in (centre + [-5.0, -6.0, 0.0], centre + [5.0, 6.0, 0.0]):  # one axial (S) plane
                roi.AddControlPoint(*map(float, corner))
            size = np.asarray(roi.GetSize())
            self.assertLess(size[2], 0.1)
            lo, hi, flat = roi_box_ijk(roi, node)
            # The voxel axis closest to S, at the box centre's index along it.
            ras_axes = image.geometry.ijk_to_ras_matrix()[:3, :3]
            self.assertEqual(flat, int(np.argmax(np.abs(ras_axes[2] / np.linalg.norm(ras_axes, axis=0)))))
            self.assertAlmostEqual(lo[flat], hi[flat])
            self.assertAlmostEqual(lo[flat], image.geometry.ras_to_ijk(centre)[flat], places=6)
            self.assertTrue(np.all(hi - lo >= 0))
        finally:
            boxes.close()

    def test_rotated_roi_is_a_3d_box_of_its_voxel_bounds(self) -> None:
        import vtk

        from segmentai_mrml.box_prompt import roi_box_ijk
        from segmentai_mrml.segmentation_nodes import segment_array
        from segmentai_mrml.volume_nodes import matrix_from_vtk, matrix_to_vtk

        image, _, labels, node, segmentation, brain, lesion = self.prompt_scene()
        shift = np.eye(4)
        shift[:3, 3] = [6.0, -3.0, 4.5]  # the volume under a transform: boxes are drawn in world space
        transform = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        transform.SetMatrixTransformToParent(matrix_to_vtk(shift))
        node.SetAndObserveTransformNodeID(transform.GetID())
        roi = self.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "rotated box")
        rotation = np.eye(4)
        rotation[:3, :3] = rotation_matrix([0.3, 1.0, 0.2], 0.6)
        roi.GetObjectToNodeMatrix().DeepCopy(matrix_to_vtk(rotation))
        roi.SetCenterWorld(*map(float, image.geometry.ijk_to_ras([10.0, 14.0, 10.0]) + shift[:3, 3]))
        roi.SetSize(9.0, 7.0, 5.0)
        # Expected, through Slicer's own matrices: the eight corners in the volume's voxel indices.
        axes, centre = [[0.0, 0.0, 0.0] for _ in range(3)], [0.0, 0.0, 0.0]
        for axis, get in zip(axes, (roi.GetXAxisWorld, roi.GetYAxisWorld, roi.GetZAxisWorld)):
            get(axis)
        roi.GetCenterWorld(centre)
        axes, centre = np.array(axes), np.array(centre)
        ras_to_ijk = vtk.vtkMatrix4x4()
        node.GetRASToIJKMatrix(ras_to_ijk)
        world_to_ijk = matrix_from_vtk(ras_to_ijk) @ np.linalg.inv(shift)
        corners = [centre + sum(s * h * a for s, h, a in zip(signs, np.asarray(roi.GetSize()) / 2, axes))
                   for signs in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T]
        corners_ijk = np.array([(world_to_ijk @ np.append(c, 1.0))[:3] for c in corners])
        lo, hi, flat = roi_box_ijk(roi, node)
        self.assertEqual(flat, -1)
        np.testing.assert_allclose(lo, corners_ijk.min(axis=0), atol=1e-6)
        np.testing.assert_allclose(hi, corners_ijk.max(axis=0), atol=1e-6)

        workflow = self.workflow()
        try:
            changed, message = workflow.refine(segmentation, brain, node, PromptMode.BOX, roi)
            self.assertEqual(message, f"Box: {changed} voxels changed")
            latest = workflow.last_prompt("box").array  # the session's box: the ROI's voxel bounds
            np.testing.assert_allclose(np.sort(latest, axis=0), np.stack([lo, hi]), atol=1e-6)
            self.assertIsNone(workflow.last_prompt("scribble"))
            after = segment_array(segmentation, brain, node)
            self.assertGreater(changed, 0)
            k, j, i = np.nonzero(after != (labels == 1))
            inside = ((i >= lo[0] - 0.5) & (i <= hi[0] + 0.5) & (j >= lo[1] - 0.5) & (j <= hi[1] + 0.5)
                      & (k >= lo[2] - 0.5) & (k <= hi[2] + 0.5))
            self.assertTrue(inside.all(), "a 3D box changes only its inside")
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
            workflow.undo_redo()
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), (labels == 1).astype(np.uint8))
            # Bad boxes: one readable line, the segment untouched.
            roi.SetCenterWorld(500.0, 500.0, 500.0)
            with self.assertRaisesRegex(InputError, "lies outside volume"):
                workflow.refine(segmentation, brain, node, PromptMode.BOX, roi)
            roi.SetCenterWorld(*map(float, centre))
            roi.SetSize(9.0, 0.0, 0.0)
            with self.assertRaisesRegex(InputError, "flat along two axes"):
                workflow.refine(segmentation, brain, node, PromptMode.BOX, roi)
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), (labels == 1).astype(np.uint8))
        finally:
            workflow.close()

    def test_scribble_drawn_as_a_curve_refines_along_it_and_undo_restores(self) -> None:
        from segmentai_mrml.segmentation_nodes import segment_array

        image, blob, labels, node, segmentation, brain, lesion = self.prompt_scene()
        workflow = self.workflow()
        strokes, counts = [], []

        def on_prompt(mode, points) -> None:
            self.assertEqual(mode.kind, "scribble")
            strokes.append((np.array(points), mode.positive))
            counts.append(workflow.refine(segmentation, brain, node, mode, points)[0])

        prompts = workflow.prompts(on_prompt)
        interaction = self.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        original = (labels == 1).astype(np.uint8)
        try:
            prompts.place(PromptMode.SCRIBBLE_POSITIVE)
            curve = prompts.scribbles.pending
            self.assertEqual(self.placement(), (curve.GetID(), "vtkMRMLMarkupsCurveNode", True))
            # A stroke of three clicks on slice k = 11 through the part of the blob that Brain misses.
            k, _, i = np.indices(blob.shape)
            missing = np.argwhere(blob & (k == 11) & (i < 13))
            stroke = missing[np.linspace(0, len(missing) - 1, 3).astype(int)]
            for kk, jj, ii in stroke:
                curve.AddControlPoint(*map(float, image.geometry.ijk_to_ras([ii, jj, kk])))
            self.assertEqual(strokes, [])  # still drawing
            interaction.SwitchToViewTransformMode()  # Slicer ends place mode when the user finishes the curve
            self.assertEqual(len(strokes), 1)
            np.testing.assert_allclose(strokes[0][0], [image.geometry.ijk_to_ras(p[::-1]) for p in stroke], atol=1e-6)
            after = segment_array(segmentation, brain, node)
            self.assertGreater(counts[0], 0)
            self.assertTrue(all(after[tuple(p)] == 1 for p in stroke))
            self.assertEqual(int((after & (labels == 2)).sum()), 0)  # the locked Lesion is never taken
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
            # Still in scribble mode: a fresh curve waits for the next stroke; the finished one is locked.
            self.assertIsNot(prompts.scribbles.pending, curve)
            self.assertTrue(curve.GetLocked() and self.placement()[2])
            workflow.undo_redo()
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), original)

            prompts.place(PromptMode.SCRIBBLE_NEGATIVE)
            curve = prompts.scribbles.pending
            inside = np.argwhere((labels == 1) & (k == 12))
            stroke = inside[[len(inside) // 3, 2 * len(inside) // 3]]
            curve.AddControlPoint(*map(float, image.geometry.ijk_to_ras(stroke[0][::-1])))
            interaction.SwitchToViewTransformMode()  # one point is no stroke: nothing happens
            self.assertEqual(len(strokes), 1)
            self.assertIs(prompts.scribbles.pending, curve)
            prompts.place(PromptMode.SCRIBBLE_NEGATIVE)
            curve.AddControlPoint(*map(float, image.geometry.ijk_to_ras(stroke[1][::-1])))
            interaction.SwitchToViewTransformMode()
            self.assertEqual((len(strokes), strokes[-1][1]), (2, False))
            after = segment_array(segmentation, brain, node)
            self.assertEqual([int(after[tuple(p)]) for p in stroke], [0, 0])
            self.assertLess(int(after.sum()), int(original.sum()))

            prompts.place(None)  # leaving scribble mode drops the waiting curve
            self.assertFalse(self.placement()[2])
            self.assertEqual(self.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsCurveNode"), 2)
        finally:
            workflow.close()
        self.assertEqual(self.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsCurveNode"), 0)
