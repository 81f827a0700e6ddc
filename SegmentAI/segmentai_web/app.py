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

__all__ = ["SegmentAIWebApp"]


class SegmentAIWebApp:
    """The whole page and its server-side logic, on ``server`` (a trame server)."""

    def __init__(self, server, config: WebConfig, registry=None) -> None:
        self.server = server
        self.config = config
        server.enable_module(trame_slicer_module)
        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, server)
        self.segment_editor_logic = SegmentEditorLogic(server, self.slicer_app)
        self.volume_property_logic = VolumePropertyLogic(server, self.slicer_app)
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
        server.state.trame__title = "SegmentAI"
