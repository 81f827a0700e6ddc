"""Run a model package on a volume node without blocking the caller, and apply the result safely.

Threading contract (Slicer's scene is not thread-safe):

* :meth:`SegmentationLogic.start` runs on the main thread: it copies the volume's voxels and
  geometry out of the scene, then starts a worker thread that only sees that copy.
* The worker runs the core :class:`~segmentai_core.inference.engine.Segmenter`; it records
  progress in the job and never touches the scene.
* :meth:`SegmentationLogic.poll` (a GUI timer) or :meth:`SegmentationLogic.finish` (a script),
  both on the main thread, forward progress to the callback and, once the worker succeeded and
  nobody cancelled, add the segmentation node. A cancelled or failed run changes nothing.

Interactive refinement edits segments through :class:`~segmentai_mrml.refinement.ClickRefiner`
and :class:`~segmentai_mrml.editing.SegmentEditor`; :meth:`SegmentationLogic.save_training_case`
adds a corrected segmentation to a fine-tuning dataset.
"""

from __future__ import annotations

import threading
import traceback
from typing import Callable, Dict, List, Optional, Tuple, Union

from segmentai_core.errors import Cancelled, InputError, SegmentAIError
from segmentai_core.progress import Progress, WorkerJob
from segmentai_core.volume import Volume

from .segmentation_nodes import add_segmentation_node, labelmap_from_segmentation
from .volume_nodes import volume_from_node

__all__ = ["ProgressCallback", "SegmentationJob", "SegmentationLogic"]

ProgressCallback = Callable[[float, str], None]


class SegmentationJob(WorkerJob):
    """One segmentation run: its state, latest progress, and outcome.

    ``state`` is ``running``, ``succeeded`` (result applied, ``segmentation_node`` set),
    ``cancelled`` or ``failed`` (``error`` holds one readable line). After :meth:`cancel` the result is
    not applied, even if the worker had already computed it.
    """

    def __init__(self, volume_node_id: str, model_id: str, device: str,
                 on_progress: Optional[ProgressCallback] = None, name: Optional[str] = None, into=None) -> None:
        super().__init__("Starting")
        self.volume_node_id = volume_node_id
        self.name = name  # of the segmentation node to create
        self.into = into  # or an existing segmentation node to fill
        self.model_id = model_id
        self.device = device
        self.on_progress = on_progress
        self.result = None  # SegmentationResult, set by the worker
        self.segmentation_node = None
        self._reported: Optional[Tuple[float, str]] = None
        self._outcome: Optional[Tuple[str, object]] = None  # ("ok", result) / ("cancelled", msg) / ("failed", msg)


class SegmentationLogic:
    """Segments volume nodes of ``scene`` with SegmentAI model packages (batch or background).

    Args:
        scene: the MRML scene (``slicer.mrmlScene`` inside Slicer).
        registry: a :class:`~segmentai_core.models.registry.ModelRegistry` (default: built-in + user models).
    """

    def __init__(self, scene, registry=None) -> None:
        self.scene = scene
        self._registry = registry
        self._segmenters: Dict[Tuple[str, str, str], object] = {}

    # --- models ----------------------------------------------------------------------------------

    @property
    def registry(self):
        if self._registry is None:
            from segmentai_core.models.registry import ModelRegistry

            self._registry = ModelRegistry()
        return self._registry

    def models(self) -> List[object]:
        """Usable model packages, built-in first."""
        return [package for package in self.registry.list() if package.ok]

    def model(self, model: Union[str, object, None] = None):
        """A package from an id, ``id@version``, folder, or package object (None: the default model)."""
        if model is None or model == "":
            return self.registry.default()
        if hasattr(model, "manifest"):
            return model
        return self.registry.get(model)

    def segmenter(self, model=None, device: str = "auto", precision: str = "float32"):
        """A cached :class:`Segmenter` (the network is loaded once per model, device and precision); a
        multi-part catalog model's id (TotalSegmentator's ``total``) gives the segmenter that runs its parts
        and merges them. ``precision``: ``float32`` or ``bfloat16`` (an InputError where the device lacks it)."""
        from segmentai_core.catalog.multipart import multipart_segmenter
        from segmentai_core.inference.engine import Segmenter

        merged = (multipart_segmenter(model, self.registry, device=device, precision=precision)
                  if isinstance(model, str) else None)
        if merged is not None:
            return merged
        package = self.model(model)
        key = (str(package.folder), device, precision)
        if key not in self._segmenters:
            self._segmenters[key] = Segmenter(package, device=device, precision=precision)
        return self._segmenters[key]

    # --- running -----------------------------------------------------------------------------------

    def segment(self, volume_node, model=None, device: str = "auto", name: Optional[str] = None,
                progress_callback: Optional[ProgressCallback] = None, into=None, precision: str = "float32"):
        """Segment ``volume_node`` in the calling thread (batch mode); returns the new segmentation node."""
        job = self.start(volume_node, model, device, progress_callback, name=name, into=into, thread=False,
                         precision=precision)
        return self.finish(job)

    def start(self, volume_node, model=None, device: str = "auto", on_progress: Optional[ProgressCallback] = None,
              name: Optional[str] = None, into=None, thread: bool = True,
              precision: str = "float32") -> SegmentationJob:
        """Start segmenting ``volume_node`` (call on the main thread); returns the running job.

        The voxels are copied here; the worker never reads the scene. Errors in the arguments
        (no volume, unknown model) raise at once, before anything starts.
        """
        if volume_node is None or self.scene.GetNodeByID(volume_node.GetID()) is not volume_node:
            raise InputError("select an input volume that is in the scene")
        volume = volume_from_node(volume_node)
        segmenter = self.segmenter(model, device, precision)
        model_id = getattr(segmenter, "model_id", None) or segmenter.manifest.full_id  # a merged model: its own id
        job = SegmentationJob(volume_node.GetID(), model_id, device, on_progress, name, into)

        def report(fraction: float, message: str) -> None:
            job._record(fraction, message)
            if not thread and on_progress is not None:  # same thread: report at once
                on_progress(fraction, message)

        progress = Progress(report, job.cancel_token)

        def run() -> None:
            self._work(job, segmenter, volume, volume_node.GetName(), progress)

        if thread:
            job.thread = threading.Thread(target=run, name="SegmentAI segmentation", daemon=True)
            job.thread.start()
        else:
            run()
        return job

    @staticmethod
    def _work(job: SegmentationJob, segmenter, volume: Volume, volume_name: str, progress: Progress) -> None:
        """Worker body: compute, never touch the scene, record the outcome."""
        try:
            outcome = ("ok", segmenter.segment(volume, progress, name=volume_name))
        except Cancelled as error:
            outcome = ("cancelled", str(error))
        except SegmentAIError as error:
            outcome = ("failed", str(error))
        except Exception as error:  # noqa: BLE001 - a bug: keep the traceback in the log, show one line
            traceback.print_exc()
            outcome = ("failed", f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}")
        job._outcome = outcome

    def poll(self, job: SegmentationJob) -> bool:
        """Forward progress and, when the worker is done, apply or drop its result (main thread).

        Returns True once the job is done (whatever its state).
        """
        if job.done:
            return True
        outcome = job._outcome  # read before the progress: the worker records its last progress first
        fraction_message = job.progress
        threaded = job.thread is not None
        if threaded and job.on_progress is not None and fraction_message != job._reported:
            job._reported = fraction_message
            job.on_progress(*fraction_message)
        if outcome is None:
            return False
        kind, value = outcome
        if kind == "ok" and job.cancel_token.cancelled:
            kind, value = "cancelled", "Cancelled by the user; nothing was changed."
        if kind == "ok":
            try:
                job.segmentation_node = self._apply(job, value)
                job.result, job.state = value, "succeeded"
            except SegmentAIError as error:
                job.state, job.error = "failed", str(error)
        else:
            job.state, job.error = ("cancelled" if kind == "cancelled" else "failed"), str(value)
        return True

    def _apply(self, job: SegmentationJob, result):
        volume_node = self.scene.GetNodeByID(job.volume_node_id)
        if volume_node is None:
            raise InputError("the input volume was removed from the scene during segmentation")
        return add_segmentation_node(self.scene, result.labelmap, result.labels, volume_node, name=job.name,
                                     model_id=result.model_id, into=job.into)

    def finish(self, job: SegmentationJob, timeout: Optional[float] = None):
        """Wait for ``job``, apply its result; returns the segmentation node or raises its error."""
        if job.thread is not None:
            job.thread.join(timeout)
            if job.thread.is_alive():
                raise TimeoutError(f"segmentation still running after {timeout} s")
        self.poll(job)
        if job.state == "cancelled":
            raise Cancelled(job.error or "Cancelled by the user; nothing was changed.")
        if job.state == "failed":
            raise SegmentAIError(job.error)
        return job.segmentation_node

    # --- training data -----------------------------------------------------------------------------

    def training_case(self, volume_node, segmentation_node) -> Tuple[Volume, Volume, list]:
        """The (image, label map, labels) of a corrected segmentation, on the image's grid.

        The fine-tuning dataset writer stores these; label values follow the segments' SegmentAI tags.
        """
        from .segmentation_nodes import segment_labels

        image = volume_from_node(volume_node)
        labelmap = labelmap_from_segmentation(segmentation_node, volume_node)
        return image, labelmap, segment_labels(segmentation_node)

    def save_training_case(self, volume_node, segmentation_node, dataset_dir, tool: str = "segmentai") -> str:
        """Add the volume and its (corrected) segmentation to the dataset in ``dataset_dir``; returns the case id."""
        from segmentai_core.dataset import add_case

        from .segmentation_nodes import MODEL_ATTRIBUTE

        if volume_node is None or segmentation_node is None:
            raise InputError("select a volume and its segmentation before saving a training case")
        if not str(dataset_dir or "").strip():
            raise InputError("choose a dataset folder before saving a training case")
        image, labelmap, labels = self.training_case(volume_node, segmentation_node)
        provenance = {"source": volume_node.GetName(), "model": segmentation_node.GetAttribute(MODEL_ATTRIBUTE) or "",
                      "tool": tool}
        return add_case(dataset_dir, image, labelmap, labels, provenance)
