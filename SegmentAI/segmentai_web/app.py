"""Assembles the web app: trame-slicer's Slicer application, views, segment editor, and SegmentAI's panel.

Follows trame-slicer's own segmentation app (SegmentationAppLogic + SegmentationAppUI), with the
volume loading replaced by SegmentAI's checked loading and SegmentAI's panel first in the drawer.
"""

from __future__ import annotations

from trame_slicer import module as trame_slicer_module
from trame_slicer.app.logic import (
    LayoutButtonLogic,
    MprInteractionButtonLogic,
    SegmentEditorLogic,
    VolumePropertyLogic,
)
from trame_slicer.app.ui import SegmentEditorUI, VolumePropertyUI
from trame_slicer.core import SlicerApp
from trame_slicer.rca_view import register_rca_factories

from .config import WebConfig
from .panel_logic import PanelLogic
from .ui import WebUI
from .vtk_output import leaving_out, print_once

__all__ = ["SegmentAIWebApp"]

TITLE = "SegmentAI"


class _VolumePropertyLogic(VolumePropertyLogic):
    """trame-slicer's volume properties, quiet while no volume is open.

    trame calls every state-change callback once when the server starts; trame-slicer's crop toggle
    then reads the volume-rendering node of a volume that is not there yet.
    """

    def _set_volume_crop_active(self, active: bool) -> None:
        if self._volume_node is not None:
            super()._set_volume_crop_active(active)


def _titled_index():
    """A route for ``/index.html``: trame's page with SegmentAI's title from its first byte.

    trame's static page says "trame is built by Kitware" until the websocket delivers the state's
    title; browsers show (and bookmark) the static one while the page loads.
    """
    import html
    import re
    from pathlib import Path

    from trame_client.module import vue3

    page = (Path(vue3.www) / "index.html").read_text(encoding="utf-8")
    page = re.sub(r"<title>.*?</title>", f"<title>{html.escape(TITLE)}</title>", page, count=1, flags=re.S)
    page = re.sub(r'(<meta\s+name="description"\s+content=")[^"]*', r"\g<1>SegmentAI: AI-assisted segmentation",
                  page, count=1)

    def bind(wslink_server) -> None:
        from aiohttp import web

        async def index(_request):
            return web.Response(text=page, content_type="text/html",
                                headers={"Cache-Control": "no-cache, no-store, must-revalidate"})

        wslink_server.app.router.add_get("/index.html", index)

    return bind


class SegmentAIWebApp:
    """The whole page and its server-side logic, on ``server`` (a trame server)."""

    def __init__(self, server, config: WebConfig, registry=None) -> None:
        self.server = server
        self.config = config
        server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        print_once()  # SlicerApp sends VTK's messages to stderr although VTK's logger prints them already
        with leaving_out():  # trame-slicer's views each print a VTK 9.6 deprecation notice when made
            self._build(server, config, registry)
        server.state.trame__title = TITLE
        server.controller.on_server_bind.add(_titled_index())

    def _build(self, server, config: WebConfig, registry) -> None:
        register_rca_factories(self.slicer_app.view_manager, server)
        self.segment_editor_logic = SegmentEditorLogic(server, self.slicer_app)
        self.volume_property_logic = _VolumePropertyLogic(server, self.slicer_app)
        self.layout_button_logic = LayoutButtonLogic(server, self.slicer_app)
        self.mpr_logic = MprInteractionButtonLogic(server, self.slicer_app)
        self.panel = PanelLogic(server, self.slicer_app, config, layout_state=None, registry=registry)
        self.panel.segment_editor_logic = self.segment_editor_logic
        self.ui = WebUI(server, self.layout_button_logic.layout_manager, self.panel.handlers(), self.panel.triggers())
        self.panel.layout_state = self.ui.layout.typed_state
        self.segment_editor_logic.set_ui(self.ui.tool_registry[SegmentEditorUI])
        self.volume_property_logic.set_ui(self.ui.tool_registry[VolumePropertyUI])
        self.layout_button_logic.set_ui(self.ui.layout_button)
        self.mpr_logic.set_ui(self.ui.mpr_interaction_button)
        editor = self.slicer_app.segmentation_editor
        # Locked segments first: an editor step that changed one is taken back before the list refreshes.
        editor.undo_stack.index_changed.connect(lambda *_: self.panel.on_history_changed())
        editor.active_segment_id_changed.connect(lambda *_: self.panel.refresh_segments())
        # Edits made with trame-slicer's effects and its undo buttons refresh SegmentAI's segment list too.
        for signal in editor.undo_stack.signals():
            signal.connect(lambda *_: self.panel.refresh_segments())
