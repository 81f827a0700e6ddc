"""SegmentAI in the browser: the desktop module's workflow on trame-slicer's views and segment editor.

``segmentai web`` (or ``segmentai-web``) serves a page with Slicer's slice and 3D views, trame-slicer's
segment editor and SegmentAI's panel (open a volume, model and card, Segment with progress and Cancel,
click, box and scribble refinement with undo/redo, save as training case, fine-tune, download). The work itself is done
by the same code the desktop module calls: :mod:`segmentai_mrml` (scene nodes, threaded segmentation
logic, click refiner, fine-tuning job) and :mod:`segmentai_core` (models, interaction session, datasets).

Modules, one job each:

* :mod:`.config` — command-line options, bind address and token rules (no trame, no VTK).
* :mod:`.uploads` — uploaded and server-side files: size limit, image sniffing, safe paths.
* :mod:`.state` — the panel's state (dataclasses mirrored in the browser).
* :mod:`.ui` — the page: trame-slicer's layout with SegmentAI's left panel.
* :mod:`.panel_logic` — the panel's handlers (main thread; jobs polled by an asyncio task).
* :mod:`.prompt_logic` — clicks, boxes and scribbles drawn in the views (mixed into the panel logic).
* :mod:`.app` — assembles trame-slicer's application and the panel.
* :mod:`.server` — ``main()``: options, token, status route, start.

Importing this package is cheap; trame, VTK and Slicer load in :func:`segmentai_web.server.main`.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """Entry point of ``segmentai-web`` (imports the server lazily)."""
    from .server import main as server_main

    return server_main(argv)
