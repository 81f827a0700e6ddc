"""SegmentAI's MRML layer: Slicer scene nodes ↔ the Slicer-free core.

Imports only MRML classes (through ``slicer``, from Slicer or from the ``slicer-core`` wheel),
``vtk`` and ``slicer.util`` array helpers — never ``qt``, ``ctk`` or ``slicer.app`` — so the same
code runs inside the Slicer application, in CI on slicer-core, and behind the web app.

Modules, one job each:

* :mod:`.scene_setup` — a scene with the module logics a bare slicer-core scene lacks.
* :mod:`.volume_nodes` — scalar volume node ↔ core ``Volume`` (array ``[k, j, i]`` + ``Geometry``).
* :mod:`.segmentation_nodes` — core label map ↔ segmentation node (names, colours, terminology).
* :mod:`.markups` — markups control points → RAS points → voxel indices of a volume.
* :mod:`.prompt_modes` — :class:`~.prompt_modes.PromptMode`: the prompt vocabulary (names, polarity, colours).
* :mod:`.prompts` / :mod:`.box_prompt` / :mod:`.scribble_prompt` — points, ROIs and curves placed in the views
  → refinement prompts.
* :mod:`.refinement` — :class:`~.refinement.ClickRefiner`: a segment refined by the interaction session.
* :mod:`.segment_locks` — locked segments: prompts refused, other edits of them taken back.
* :mod:`.finetune_job` / :mod:`.workflow` — fine-tuning in the background; the panel's steps as one object
  that the desktop module and the web app both call, each with its own undo mechanism.
* :mod:`.storage` — reading and writing nodes through Slicer's storage nodes (``.seg.nrrd``, ...).
* :mod:`.editing` — undoable segment edits through Slicer's C++ segment-editor logic.
* :mod:`.logic` — :class:`~.logic.SegmentationLogic`: run a model on a volume node off the main thread.
* :mod:`.testing` — ``unittest`` cases shared by pytest (CI) and Slicer's self-test.
"""
