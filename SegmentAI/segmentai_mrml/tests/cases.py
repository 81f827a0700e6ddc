"""Test cases of the MRML layer, shared by pytest (CI, on slicer-core) and Slicer's self-test.

They are ``unittest.TestCase`` classes because Slicer's ctest (``slicer_add_python_unittest``)
loads test cases by class; pytest collects the same classes through
``Testing/Python/test_mrml_layer.py``. Every case builds its own scene and a tiny model package
with random weights in a temporary folder, so no downloaded data is needed.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import unittest
from pathlib import Path

import numpy as np
from segmentai_core.errors import Cancelled, InputError, SegmentAIError
from segmentai_core.geometry import Geometry

from ..prompt_modes import PromptMode
from .placement import PromptPlacementTest
from .scene import BRAIN, LABELS, _SceneCase, make_tiny_package, oblique_phantom, resample_nearest

__all__ = ["ALL_CASES", "DefaultModelTest", "MRMLLayerTest", "PromptPlacementTest", "RefineAndSaveTest",
           "SegmentationLogicTest", "check_panel_workflow", "make_tiny_package"]


class MRMLLayerTest(_SceneCase):
    """Volume, segmentation, markups, storage and editing conversions against real MRML."""

    def test_volume_node_keeps_voxels_and_oblique_geometry(self) -> None:
        import vtk

        from segmentai_mrml.volume_nodes import geometry_from_node, matrix_from_vtk, volume_from_node

        image, _ = oblique_phantom()
        node = self.add_volume(image)
        back = volume_from_node(node)
        np.testing.assert_array_equal(back.array, image.array)
        self.assertTrue(geometry_from_node(node).same_grid(image.geometry, tolerance_mm=1e-6))
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        np.testing.assert_allclose(matrix_from_vtk(matrix), image.geometry.ijk_to_ras_matrix(), atol=1e-9)
        # Slicer's own RAS of a voxel equals the core's.
        ras = matrix_from_vtk(matrix) @ np.array([3.0, 7.0, 11.0, 1.0])
        np.testing.assert_allclose(ras[:3], image.geometry.ijk_to_ras([3.0, 7.0, 11.0]), atol=1e-9)

    def test_labelmap_lands_on_the_same_voxels(self) -> None:
        from segmentai_mrml.segmentation_nodes import add_segmentation_node, labelmap_from_segmentation, segment_array

        image, mask = oblique_phantom()
        labels = mask.array.copy()
        labels[(mask.array > 0) & (np.arange(mask.array.shape[2]) < 12)[None, None, :]] = 2
        node = self.add_volume(image)
        segmentation = add_segmentation_node(self.scene, image.with_array(labels), LABELS, node)
        np.testing.assert_array_equal(labelmap_from_segmentation(segmentation, node).array, labels)
        lesion = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Lesion")
        np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
        self.assertIs(segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()), node)

    def test_names_colours_and_terminology(self) -> None:
        from segmentai_mrml.segmentation_nodes import add_segmentation_node, segment_labels, segment_tag

        image, mask = oblique_phantom()
        node = self.add_volume(image)
        segmentation = add_segmentation_node(self.scene, mask, LABELS, node, model_id="tiny@1")
        self.assertEqual(segmentation.GetSegmentation().GetNumberOfSegments(), 3)  # empty labels too
        for label, found in zip(LABELS, segment_labels(segmentation)):
            self.assertEqual((found.value, found.name), (label.value, label.name))
            np.testing.assert_allclose(found.color, label.color, atol=1e-6)
        segments = segmentation.GetSegmentation()
        brain = segments.GetSegment(segments.GetSegmentIdBySegmentName("Brain"))
        entry = segment_tag(brain, brain.GetTerminologyEntryTagName())
        self.assertIn("SCT^12738006^Brain", entry)
        self.assertEqual(segment_labels(segmentation)[0].terminology, BRAIN)
        self.assertEqual(segmentation.GetAttribute("SegmentAI.Model"), "tiny@1")

    def test_markups_map_to_the_right_voxels(self) -> None:
        from segmentai_mrml.markups import control_points_ijk
        from segmentai_mrml.volume_nodes import matrix_to_vtk

        image, _ = oblique_phantom()
        node = self.add_volume(image)
        voxels = np.array([[0, 0, 0], [5, 9, 3], [27, 29, 23]])
        # Points a little off the voxel centres (less than half a voxel) still pick those voxels.
        offset = image.geometry.direction_matrix @ (np.array([0.3, -0.4, 0.45]) * image.geometry.spacing)
        points = image.geometry.ijk_to_ras(voxels) + offset * np.array([-1.0, -1.0, 1.0])
        markups = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "prompts")
        for point in points:
            markups.AddControlPoint(*map(float, point))
        np.testing.assert_array_equal(control_points_ijk(markups, node), voxels)
        # A transformed volume: points placed in world space go through the inverse transform.
        shift = np.eye(4)
        shift[:3, 3] = [10.0, -4.0, 7.5]
        transform = self.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        transform.SetMatrixTransformToParent(matrix_to_vtk(shift))
        node.SetAndObserveTransformNodeID(transform.GetID())
        moved = self.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "moved")
        for point in points + shift[:3, 3]:
            moved.AddControlPoint(*map(float, point))
        np.testing.assert_array_equal(control_points_ijk(moved, node), voxels)
        markups.AddControlPoint(1000.0, 1000.0, 1000.0)
        with self.assertRaises(InputError):
            control_points_ijk(markups, node)

    def test_seg_nrrd_saved_and_reloaded_through_storage_nodes(self) -> None:
        from segmentai_core.io import read_segmentation

        from segmentai_mrml.scene_setup import create_context
        from segmentai_mrml.segmentation_nodes import add_segmentation_node, labelmap_from_segmentation, segment_labels
        from segmentai_mrml.storage import load_segmentation, load_volume, save_node

        image, mask = oblique_phantom()
        labels = mask.array.copy()
        labels[labels > 0] += (np.indices(labels.shape)[0][labels > 0] < 10).astype(np.uint8)
        node = self.add_volume(image)
        segmentation = add_segmentation_node(self.scene, image.with_array(labels), LABELS, node)
        seg_path = save_node(segmentation, self.tmp / "result.seg.nrrd")
        image_path = save_node(node, self.tmp / "image.nrrd")
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["image.nrrd", "result.seg.nrrd"])

        other = create_context()
        try:
            loaded = load_segmentation(other.scene, seg_path)
            np.testing.assert_array_equal(labelmap_from_segmentation(loaded, node).array, labels)
            # Slicer's volume reader makes this left-handed grid right-handed (it flips k): the
            # reloaded image indexes voxels differently, so compare the labels in physical space.
            volume2 = load_volume(other.scene, image_path)
            reloaded = labelmap_from_segmentation(loaded, volume2)
            np.testing.assert_array_equal(reloaded.array, resample_nearest(image.with_array(labels), reloaded.geometry))
            found = segment_labels(loaded)
            self.assertEqual([(x.value, x.name) for x in found], [(x.value, x.name) for x in LABELS])
            self.assertEqual(found[0].terminology, BRAIN)  # Slicer gives the others its default, "Tissue"
            np.testing.assert_allclose([x.color for x in found], [x.color for x in LABELS], atol=1e-6)
        finally:
            other.close()
        # The core's reader (CLI, web app) understands the file Slicer wrote.
        core_labelmap, core_labels = read_segmentation(seg_path)
        self.assertTrue(core_labelmap.geometry.same_grid(image.geometry))
        self.assertEqual([x.name for x in core_labels], ["Brain", "Lesion", "Never present"])
        truncated = self.tmp / "truncated.seg.nrrd"
        truncated.write_bytes(seg_path.read_bytes()[:-200])
        count = self.scene.GetNumberOfNodes()
        with self.assertRaises(InputError):
            load_segmentation(self.scene, truncated)
        self.assertEqual(self.scene.GetNumberOfNodes(), count)

    def test_segment_editor_undo_restores_a_refined_segment(self) -> None:
        from segmentai_mrml.editing import SegmentEditor
        from segmentai_mrml.segmentation_nodes import add_segmentation_node, segment_array

        image, mask = oblique_phantom()
        labels = mask.array.copy()
        labels[2:6, 2:6, 2:6] = 2
        node = self.add_volume(image)
        segmentation = add_segmentation_node(self.scene, image.with_array(labels), LABELS, node)
        ids = segmentation.GetSegmentation()
        brain, lesion = ids.GetSegmentIdBySegmentName("Brain"), ids.GetSegmentIdBySegmentName("Lesion")
        editor = SegmentEditor(self.scene, segmentation, node, self.context.app_logic)
        refined = np.zeros_like(labels)
        refined[1:12, 1:12, 1:12] = 1  # overlaps the locked Lesion segment
        editor.replace_segment(brain, refined)
        np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
        expected = refined.copy()
        expected[labels == 2] = 0
        np.testing.assert_array_equal(segment_array(segmentation, brain, node), expected)
        editor.replace_segment(brain, np.zeros_like(labels))
        self.assertEqual(segment_array(segmentation, brain, node).sum(), 0)
        editor.undo()
        np.testing.assert_array_equal(segment_array(segmentation, brain, node), expected)
        editor.undo()
        np.testing.assert_array_equal(segment_array(segmentation, brain, node), (labels == 1).astype(np.uint8))
        self.assertTrue(editor.can_redo())
        editor.redo()
        np.testing.assert_array_equal(segment_array(segmentation, brain, node), expected)
        # Unlocked, the segment takes the voxels it needs from the others.
        editor.replace_segment(brain, refined, other_segments_locked=False)
        np.testing.assert_array_equal(segment_array(segmentation, brain, node), refined)
        self.assertEqual(segment_array(segmentation, lesion, node).sum(), 0)
        editor.close()


class SegmentationLogicTest(_SceneCase):
    """The logic running a real (tiny) model: same voxels as the core, progress, cancel, failure."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.models = Path(tempfile.mkdtemp(prefix="segmentai-models-"))
        cls.package = make_tiny_package(cls.models / "tiny")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.models, ignore_errors=True)
        super().tearDownClass()

    def logic(self):
        from segmentai_core.models.registry import ModelRegistry

        from segmentai_mrml.logic import SegmentationLogic

        return SegmentationLogic(self.scene, ModelRegistry(builtin_dir=self.models, user_dir=self.tmp / "user"))

    def test_segmentation_matches_the_core_on_an_oblique_volume(self) -> None:
        from segmentai_core.inference.engine import Segmenter

        from segmentai_mrml.segmentation_nodes import labelmap_from_segmentation

        image, _ = oblique_phantom()
        node = self.add_volume(image)
        reports = []
        segmentation = self.logic().segment(node, "tiny-test", "cpu",
                                            progress_callback=lambda f, m: reports.append(f))
        expected = Segmenter(self.package, device="cpu").segment(image).labelmap.array
        self.assertGreater(int(expected.sum()), 0)
        np.testing.assert_array_equal(labelmap_from_segmentation(segmentation, node).array, expected)
        self.assertEqual(segmentation.GetSegmentation().GetNthSegment(0).GetName(), "Object")
        self.assertEqual(reports[-1], 1.0)
        self.assertEqual(reports, sorted(reports))

    def test_bfloat16_precision_reaches_the_engine_or_is_refused_before_anything_starts(self) -> None:
        from segmentai_core.errors import InputError
        from segmentai_core.inference.engine import Segmenter
        from segmentai_core.inference.precision import bfloat16_supported
        from segmentai_core.metrics import dice

        from segmentai_mrml.segmentation_nodes import labelmap_from_segmentation

        image, _ = oblique_phantom()
        node = self.add_volume(image)
        before = self.scene.GetNumberOfNodes()
        if not bfloat16_supported():
            with self.assertRaises(InputError):
                self.logic().segment(node, "tiny-test", "cpu", precision="bfloat16")
            self.assertEqual(self.scene.GetNumberOfNodes(), before)  # nothing added
            return
        logic = self.logic()
        segmentation = logic.segment(node, "tiny-test", "cpu", precision="bfloat16")
        self.assertEqual(logic.segmenter("tiny-test", "cpu", "bfloat16").precision, "bfloat16")
        expected = Segmenter(self.package, device="cpu").segment(image).labelmap.array
        got = labelmap_from_segmentation(segmentation, node).array
        self.assertGreater(dice(got > 0, expected > 0), 0.95)

    def test_background_run_reports_progress_on_the_calling_thread(self) -> None:
        image, _ = oblique_phantom()
        node = self.add_volume(image)
        logic = self.logic()
        threads, fractions = set(), []

        def on_progress(fraction: float, message: str) -> None:
            threads.add(threading.current_thread())
            fractions.append(fraction)

        job = logic.start(node, "tiny-test", "cpu", on_progress)
        while not logic.poll(job):
            job.thread.join(0.02)
        self.assertEqual(job.state, "succeeded", job.error)
        self.assertEqual(threads, {threading.current_thread()})
        self.assertEqual(fractions[-1], 1.0)
        self.assertEqual(self.segmentation_nodes(), 1)

    def test_cancelled_run_leaves_the_scene_as_it_was(self) -> None:
        image, _ = oblique_phantom()
        node = self.add_volume(image)
        logic = self.logic()
        logic.segmenter("tiny-test", "cpu")
        count, modified = self.scene.GetNumberOfNodes(), node.GetMTime()
        job = logic.start(node, "tiny-test", "cpu")
        job.cancel()
        with self.assertRaises(Cancelled):
            logic.finish(job, timeout=60)
        self.assertEqual(job.state, "cancelled")
        self.assertEqual((self.scene.GetNumberOfNodes(), self.segmentation_nodes()), (count, 0))
        self.assertEqual(node.GetMTime(), modified)

    def test_failed_run_leaves_the_scene_as_it_was(self) -> None:
        image, _ = oblique_phantom()
        node = self.add_volume(image.with_array(np.full(image.array.shape, 7.0, np.float32)))
        logic = self.logic()
        count = self.scene.GetNumberOfNodes()
        job = logic.start(node, "tiny-test", "cpu")
        with self.assertRaises(SegmentAIError) as raised:
            logic.finish(job, timeout=60)
        self.assertIn("constant", str(raised.exception))
        self.assertEqual(len(str(raised.exception).splitlines()), 1)
        self.assertEqual(self.scene.GetNumberOfNodes(), count)

    def test_training_case_round_trip(self) -> None:
        from segmentai_mrml.segmentation_nodes import add_segmentation_node

        image, mask = oblique_phantom()
        node = self.add_volume(image)
        segmentation = add_segmentation_node(self.scene, mask, LABELS[:1], node)
        case_image, case_labels, labels = self.logic().training_case(node, segmentation)
        np.testing.assert_array_equal(case_image.array, image.array)
        np.testing.assert_array_equal(case_labels.array, mask.array)
        self.assertTrue(case_labels.geometry.same_grid(image.geometry))
        self.assertEqual([x.name for x in labels], ["Brain"])


class RefineAndSaveTest(_SceneCase):
    """The panel's Refine and Save-as-training-case steps, through the shared MRML-layer classes."""

    def test_click_in_ras_refines_through_the_editor_and_undo_restores(self) -> None:
        from segmentai_mrml.refinement import ClickRefiner, EditorApply
        from segmentai_mrml.segmentation_nodes import segment_array

        image, blob, labels, node, segmentation, brain, lesion = self.refine_scene()
        apply = EditorApply(self.scene, self.context.app_logic)
        refiner = ClickRefiner(apply=apply)
        try:
            inside = np.argwhere(blob & (np.indices(blob.shape)[0] < 12))
            k, j, i = inside[len(inside) // 2]
            changed = refiner.add_point(segmentation, brain, node, image.geometry.ijk_to_ras([i, j, k]), True)
            after = segment_array(segmentation, brain, node)
            self.assertGreater(changed, 0)
            self.assertEqual(int(after[k, j, i]), 1)  # the clicked voxel (RAS on an oblique grid) joined
            self.assertGreater(int(after.sum()), int((labels == 1).sum()))
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
            self.assertEqual(int((after & (labels == 2)).sum()), 0)
            self.assertTrue(apply.can_undo())
            apply.undo()
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), (labels == 1).astype(np.uint8))
            apply.redo()
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), after)
            # After an undo the refiner restarts from the segment as it is now.
            apply.undo()
            refiner.add_point(segmentation, brain, node, image.geometry.ijk_to_ras([i, j, k]), False)
            self.assertEqual(int(segment_array(segmentation, brain, node)[k, j, i]), 0)
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
        finally:
            refiner.close()
            apply.close()

    def test_panel_workflow(self) -> None:
        from segmentai_core.models.registry import ModelRegistry

        from segmentai_mrml.logic import SegmentationLogic
        from segmentai_mrml.workflow import PanelWorkflow

        models = self.tmp / "models"
        make_tiny_package(models / "tiny")
        logic = SegmentationLogic(self.scene, ModelRegistry(builtin_dir=models, user_dir=self.tmp / "user"))
        workflow = PanelWorkflow(logic, app_logic=self.context.app_logic)
        try:
            check_panel_workflow(self, logic, workflow, self.add_volume(oblique_phantom()[0]))
        finally:
            workflow.close()

    def test_locked_segment_refuses_prompts_and_a_new_edit_of_it_is_taken_back(self) -> None:
        from segmentai_core.interaction import InteractionSession, RandomWalkerPredictor

        from segmentai_mrml.logic import SegmentationLogic
        from segmentai_mrml.segment_locks import LOCK_TAG
        from segmentai_mrml.segmentation_nodes import segment_array
        from segmentai_mrml.workflow import PanelWorkflow

        image, blob, labels, node, segmentation, brain, lesion = self.refine_scene(lesion_inside_missed_part=True)
        workflow = PanelWorkflow(SegmentationLogic(self.scene), app_logic=self.context.app_logic,
                                 session_factory=lambda: InteractionSession(RandomWalkerPredictor()))
        try:
            self.assertEqual(workflow.toggle_lock(segmentation, lesion, node), "Segment Lesion locked")
            self.assertEqual(workflow.locked_segments(segmentation), [lesion])
            self.assertTrue(segmentation.GetSegmentation().GetSegment(lesion).HasTag(LOCK_TAG))  # saved with it
            inside = np.argwhere(labels == 2)
            k, j, i = inside[len(inside) // 2]
            with self.assertRaisesRegex(InputError, "segment 'Lesion' is locked"):
                workflow.refine(segmentation, lesion, node, PromptMode.NEGATIVE, image.geometry.ijk_to_ras([i, j, k]))
            self.assertFalse(workflow.can_undo_redo())
            # An edit of the locked segment through the history (as the editor's effects make) is undone.
            workflow.undo(segmentation, lesion, np.zeros_like(labels), node)
            self.assertEqual(workflow.keep_locks(segmentation, node),
                             "Segment Lesion is locked: the edit was taken back")
            np.testing.assert_array_equal(segment_array(segmentation, lesion, node), (labels == 2).astype(np.uint8))
            self.assertEqual(workflow.keep_locks(segmentation, node), "")
            self.assertEqual(workflow.toggle_lock(segmentation, lesion, node), "Segment Lesion unlocked")
            workflow.undo(segmentation, lesion, np.zeros_like(labels), node)
            self.assertEqual(workflow.keep_locks(segmentation, node), "")
            self.assertEqual(int(segment_array(segmentation, lesion, node).sum()), 0)
        finally:
            workflow.close()

    def test_save_training_case_writes_the_image_grid(self) -> None:
        from segmentai_core.dataset import list_cases
        from segmentai_core.io import read_labelmap, read_volume

        from segmentai_mrml.logic import SegmentationLogic

        image, _, labels, node, segmentation, _, _ = self.refine_scene()
        logic = SegmentationLogic(self.scene)
        dataset = self.tmp / "dataset"
        with self.assertRaises(InputError):
            logic.save_training_case(node, segmentation, "")
        first = logic.save_training_case(node, segmentation, dataset, tool="test")
        with self.assertRaisesRegex(InputError, "already in dataset"):  # the same image twice: validation leak
            logic.save_training_case(node, segmentation, dataset, tool="test")
        cases = list_cases(dataset)
        self.assertEqual([c.case_id for c in cases], [first])
        case = cases[0]
        saved_image, saved_labels = read_volume(case.image), read_labelmap(case.label)
        self.assertTrue(saved_image.geometry.same_grid(image.geometry, tolerance_mm=1e-3))
        self.assertTrue(saved_labels.geometry.same_grid(image.geometry, tolerance_mm=1e-3))
        np.testing.assert_allclose(saved_image.array, image.array, atol=1e-5)
        np.testing.assert_array_equal(saved_labels.array, labels)
        self.assertEqual((case.provenance["source"], case.provenance["tool"]), (node.GetName(), "test"))


class DefaultModelTest(_SceneCase):
    """The bundled default model on a small head phantom, through the logic (skipped if not bundled)."""

    def test_default_model_on_head_phantom(self) -> None:
        from segmentai_core.errors import ModelError
        from segmentai_core.metrics import dice
        from segmentai_core.models.registry import ModelRegistry
        from segmentai_core.phantoms import head_phantom

        from segmentai_mrml.logic import SegmentationLogic
        from segmentai_mrml.segmentation_nodes import labelmap_from_segmentation

        try:
            package = ModelRegistry().default()
        except ModelError as error:
            self.skipTest(f"no bundled model: {error}")
        image, brain = head_phantom(shape=(64, 72, 64), spacing=3.0, seed=3)
        node = self.add_volume(image)
        segmentation = SegmentationLogic(self.scene).segment(node, package, "cpu")
        found = labelmap_from_segmentation(segmentation, node)
        self.assertIsInstance(found.geometry, Geometry)
        self.assertGreater(dice(found.array > 0, brain.array > 0), 0.8)


def check_panel_workflow(test: unittest.TestCase, logic, workflow, volume_node, pump=None) -> None:
    """The panel's workflow on ``volume_node``: Segment in the background, refine with a point, undo, save a case.

    ``logic`` is a SegmentationLogic, ``workflow`` a PanelWorkflow on its scene, ``pump`` processes GUI events.
    """
    import time

    from segmentai_core.dataset import list_cases
    from segmentai_core.errors import ModelError

    from segmentai_mrml.segmentation_nodes import segment_array
    from segmentai_mrml.volume_nodes import geometry_from_node

    try:
        model = logic.model()
    except ModelError:  # a build without bundled weights: a real, small random-weight model
        model = make_tiny_package(Path(tempfile.mkdtemp()) / "tiny")
    fractions = []
    job = logic.start(volume_node, model, "auto", lambda f, m: fractions.append(f))
    while not logic.poll(job):
        if pump is not None:
            pump()
        time.sleep(0.05)
    test.assertEqual(job.state, "succeeded", job.error)
    test.assertEqual(fractions[-1], 1.0)
    segmentation = job.segmentation_node
    segment_id = segmentation.GetSegmentation().GetNthSegmentID(0)
    before = segment_array(segmentation, segment_id, volume_node)
    voxels = np.argwhere(before > 0) if before.any() else np.argwhere(np.ones_like(before))
    k, j, i = voxels[len(voxels) // 2]
    positive = not before[k, j, i]  # a negative point inside the segment, else a positive one
    mode = PromptMode.point(positive)
    changed, message = workflow.refine(segmentation, segment_id, volume_node, mode,
                                       geometry_from_node(volume_node).ijk_to_ras([i, j, k]))
    test.assertEqual(message, mode.result_message(changed))
    test.assertEqual(int(segment_array(segmentation, segment_id, volume_node)[k, j, i]), int(positive))
    workflow.undo_redo(redo=False)
    np.testing.assert_array_equal(segment_array(segmentation, segment_id, volume_node), before)
    workflow.undo_redo(redo=True)
    dataset = Path(tempfile.mkdtemp()) / "dataset"
    case_id, message = workflow.save_training_case(volume_node, segmentation, dataset)
    test.assertEqual([case.case_id for case in list_cases(dataset)], [case_id])
    test.assertEqual(message, f"Saved {case_id} in {dataset}")


ALL_CASES = (MRMLLayerTest, SegmentationLogicTest, RefineAndSaveTest, PromptPlacementTest, DefaultModelTest)
"""Every shared case, in the order Slicer's self-test runs them."""
