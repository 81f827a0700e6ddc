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
from segmentai_core.labels import Code, SegmentLabel, Terminology
from segmentai_core.phantoms import blob_phantom, rotation_matrix

__all__ = ["ALL_CASES", "DefaultModelTest", "MRMLLayerTest", "PromptPlacementTest", "RefineAndSaveTest",
           "SegmentationLogicTest", "check_panel_workflow", "make_tiny_package"]

BRAIN = Terminology(Code("SCT", "123037004", "Anatomical Structure"), Code("SCT", "12738006", "Brain"))
LABELS = [SegmentLabel(1, "Brain", (0.9, 0.7, 0.6), BRAIN), SegmentLabel(2, "Lesion", (0.2, 0.4, 1.0)),
          SegmentLabel(3, "Never present", (0.1, 0.9, 0.1))]


def make_tiny_package(folder: Path, seed: int = 0):
    """A valid model package with a random-weight 3-level UNet (fast on CPU; its output depends on the image)."""
    import torch
    from segmentai_core.models.networks import build_network
    from segmentai_core.models.package import write_model_package

    manifest = {
        "schema_version": 1, "id": "tiny-mrml-test", "version": "0.0.1", "name": "Tiny MRML test network",
        "task": "tests only: random weights", "modality": "any", "dimensions": 3,
        "architecture": {"name": "UNet", "args": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1,
                                                  "norm": "batch"}},
        "input_channels": ["image"],
        "labels": {"1": {"name": "Object", "color": [1.0, 0.2, 0.2],
                         "terminology": BRAIN.to_dict()}},
        "preprocessing": {"orientation": "RAS", "target_spacing": [2.0, 2.0, 2.0],
                          "normalization": {"type": "zscore"}},
        "inference": {"patch_size": [32, 32, 32], "overlap": 0.25, "mirror_axes": [0, 1, 2]},
        "postprocessing": {"largest_component": False, "fill_holes": False},
        "weights": {"file": "model.safetensors", "format": "safetensors", "sha256": "0" * 64},
        "license": {"code": "Apache-2.0", "weights": "Apache-2.0"},
        "training_data": "none (random weights)", "accuracy": [],
    }
    torch.manual_seed(seed)
    network = build_network(manifest["architecture"], 3, 1, 2)
    return write_model_package(folder, manifest, network.state_dict())


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
        try:
            import torch

            torch.set_num_threads(1)  # CI has 2 cores and other work running
        except ImportError:  # pragma: no cover - the module installs torch before its self-test
            pass

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
        segmentation = self.logic().segment(node, "tiny-mrml-test", "cpu",
                                            progress_callback=lambda f, m: reports.append(f))
        expected = Segmenter(self.package, device="cpu").segment(image).labelmap.array
        self.assertGreater(int(expected.sum()), 0)
        np.testing.assert_array_equal(labelmap_from_segmentation(segmentation, node).array, expected)
        self.assertEqual(segmentation.GetSegmentation().GetNthSegment(0).GetName(), "Object")
        self.assertEqual(reports[-1], 1.0)
        self.assertEqual(reports, sorted(reports))

    def test_background_run_reports_progress_on_the_calling_thread(self) -> None:
        image, _ = oblique_phantom()
        node = self.add_volume(image)
        logic = self.logic()
        threads, fractions = set(), []

        def on_progress(fraction: float, message: str) -> None:
            threads.add(threading.current_thread())
            fractions.append(fraction)

        job = logic.start(node, "tiny-mrml-test", "cpu", on_progress)
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
        logic.segmenter("tiny-mrml-test", "cpu")
        count, modified = self.scene.GetNumberOfNodes(), node.GetMTime()
        job = logic.start(node, "tiny-mrml-test", "cpu")
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
        job = logic.start(node, "tiny-mrml-test", "cpu")
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
        workflow = PanelWorkflow(logic, self.context.app_logic)
        try:
            check_panel_workflow(self, logic, workflow, self.add_volume(oblique_phantom()[0]))
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
        second = logic.save_training_case(node, segmentation, dataset, tool="test")
        self.assertNotEqual(first, second)
        cases = list_cases(dataset)
        self.assertEqual([c.case_id for c in cases], [first, second])
        case = cases[0]
        saved_image, saved_labels = read_volume(case.image), read_labelmap(case.label)
        self.assertTrue(saved_image.geometry.same_grid(image.geometry, tolerance_mm=1e-3))
        self.assertTrue(saved_labels.geometry.same_grid(image.geometry, tolerance_mm=1e-3))
        np.testing.assert_allclose(saved_image.array, image.array, atol=1e-5)
        np.testing.assert_array_equal(saved_labels.array, labels)
        self.assertEqual((case.provenance["source"], case.provenance["tool"]), (node.GetName(), "test"))


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
        return PanelWorkflow(SegmentationLogic(self.scene), self.context.app_logic,
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

        def on_point(position, positive: bool) -> None:
            placed.append((position, positive))
            counts.append(workflow.refine(segmentation, brain, node, position, positive))

        prompts = workflow.prompts(on_point)
        try:
            prompts.place(True)
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

            prompts.place(False)
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
        from segmentai_mrml.prompts import BOX
        from segmentai_mrml.segmentation_nodes import segment_array

        image, blob, labels, node, segmentation, brain, lesion = self.prompt_scene()
        ijk_to_ras = image.geometry.ijk_to_ras_matrix()[:3, :3]
        self.add_slice_view(ijk_to_ras / np.linalg.norm(ijk_to_ras, axis=0))
        workflow = self.workflow()
        boxes, counts = [], []

        def on_box(roi) -> None:
            boxes.append(roi)
            counts.append(workflow.refine_box(segmentation, brain, node, roi))

        prompts = workflow.prompts(lambda position, positive: None, on_box)
        try:
            prompts.place(BOX)
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
            changed = workflow.refine_box(segmentation, brain, node, roi)
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
                workflow.refine_box(segmentation, brain, node, roi)
            roi.SetCenterWorld(*map(float, centre))
            roi.SetSize(9.0, 0.0, 0.0)
            with self.assertRaisesRegex(InputError, "flat along two axes"):
                workflow.refine_box(segmentation, brain, node, roi)
            np.testing.assert_array_equal(segment_array(segmentation, brain, node), (labels == 1).astype(np.uint8))
        finally:
            workflow.close()


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
    workflow.refine(segmentation, segment_id, volume_node, geometry_from_node(volume_node).ijk_to_ras([i, j, k]),
                    positive)
    test.assertEqual(int(segment_array(segmentation, segment_id, volume_node)[k, j, i]), int(positive))
    workflow.undo_redo(redo=False)
    np.testing.assert_array_equal(segment_array(segmentation, segment_id, volume_node), before)
    workflow.undo_redo(redo=True)
    dataset = Path(tempfile.mkdtemp()) / "dataset"
    case_id = workflow.save_training_case(volume_node, segmentation, dataset)
    test.assertEqual([case.case_id for case in list_cases(dataset)], [case_id])


ALL_CASES = (MRMLLayerTest, SegmentationLogicTest, RefineAndSaveTest, PromptPlacementTest, DefaultModelTest)
"""Every shared case, in the order Slicer's self-test runs them."""
