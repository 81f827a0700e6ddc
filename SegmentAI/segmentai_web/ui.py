"""The page: trame-slicer's viewer layout (left tool bar, drawer, views) with SegmentAI's panel.

The SegmentAI panel is the first tool of the drawer and is open at start; trame-slicer's segment
editor (brush, eraser, scissors, islands, smoothing, ...) and volume properties are the others,
as in trame-slicer's segmentation app. Element ids (``sai-...``) name the controls for tests.
"""

from __future__ import annotations

from trame.widgets import html
from trame.widgets.vuetify3 import (
    VAlert,
    VBtn,
    VBtnToggle,
    VExpansionPanel,
    VExpansionPanels,
    VExpansionPanelText,
    VExpansionPanelTitle,
    VFileInput,
    VImg,
    VList,
    VListItem,
    VProgressLinear,
    VSelect,
    VSpacer,
    VTextField,
)
from trame_slicer.app.ui import (
    ControlButton,
    LayoutButton,
    MprInteractionButton,
    SegmentEditorUI,
    SegmentEditorUndoRedoUI,
    ViewerLayout,
    VolumePropertyUI,
)

from .catalog_logic import INSTALL_CANCEL_TRIGGER, INSTALL_TRIGGER

__all__ = ["SegmentAIPanel", "WebUI"]

PANEL = "SegmentAIPanel"


def _section(title: str) -> None:
    html.Div(title, classes="text-overline mt-3 mb-1")


def _catalog() -> None:
    """The model catalog: one row per public model, Install (asks first: licence and size), progress, Cancel.

    The buttons send the row's catalog id only (the server installs only ids of its own catalog)."""
    with VExpansionPanels(variant="accordion", classes="mt-1", id="sai-catalog-panels"):
        with VExpansionPanel():
            VExpansionPanelTitle("Install models ({{ sai_catalog.length }} in the catalog)", classes="text-caption",
                                 id="sai-catalog-title")
            with VExpansionPanelText():
                with html.Div(id="sai-catalog"):
                    with html.Div(v_for="m in sai_catalog", key="m.id", classes="sai-catalog-row py-1",
                                  style="border-bottom: 1px solid rgba(128, 128, 128, 0.3);",
                                  raw_attrs=[':data-model="m.id"', ':title="m.card"']):
                        with html.Div(classes="d-flex align-center ga-2"):
                            html.Span("{{ m.id }}", classes="text-body-2 font-weight-bold")
                            VSpacer()
                            VBtn("Install", size="x-small", variant="tonal", classes="sai-install",
                                 prepend_icon="mdi-download", disabled=("!m.installable || !!sai_installing",),
                                 click=("window.confirm('Install ' + m.id + '? Weights licence: ' + "
                                        "m.license_text + '. Download: ' + m.size_text + '.') && "
                                        f"trigger('{INSTALL_TRIGGER}', [m.id])"))
                        html.Div("{{ m.task }}", classes="text-caption")
                        with html.Div(classes="text-caption"):
                            html.Span("{{ m.modality }} · {{ m.classes }} classes · {{ m.size_text }} · ")
                            html.Span("{{ m.license_text }}", classes="sai-licence")
                        html.Div("{{ m.installed_text }}", classes="text-caption text-medium-emphasis sai-installed")
                with html.Div(v_if=("sai_installing",), classes="d-flex align-center ga-2 mt-1"):
                    VProgressLinear(model_value=("sai_install_progress",), height=6, color="primary",
                                    id="sai-install-progress")
                    VBtn("Cancel", id="sai-install-cancel", size="x-small", variant="outlined",
                         click=f"trigger('{INSTALL_CANCEL_TRIGGER}')")
                html.Div("{{ sai_install_text }}", classes="text-caption", id="sai-install-text")


class SegmentAIPanel(html.Div):
    """SegmentAI's controls; ``handlers`` maps action names to server callbacks."""

    def __init__(self, handlers, triggers, **kwargs) -> None:
        super().__init__(classes="pa-3", style="overflow-y: auto; height: 100%;", **kwargs)
        with self:
            html.Div("SegmentAI", classes="text-h6")
            VAlert(v_if=("sai_message",), text=("sai_message",), type=("sai_message_type",), density="compact",
                   closable=True, classes="my-2", id="sai-message", click_close="sai_message = ''")

            _section("Volume")
            with html.Div(classes="d-flex align-center ga-2"):
                VBtn("Sample", id="sai-sample", prepend_icon="mdi-brain", size="small", variant="tonal",
                     click=handlers["load_sample"], disabled=("sai_busy",))
                VFileInput(
                    id="sai-upload", label="Upload image", density="compact", hide_details=True,
                    prepend_icon="mdi-file-upload", accept=".nii,.nii.gz,.nrrd,.mha", disabled=("sai_busy",),
                    change=(
                        "const files = Array.from($event.target.files || []);"
                        "const big = files.find(f => f.size > sai_max_upload_mb * 1048576);"
                        f"if (big) {{ trame.trigger('{triggers['upload_refused']}', [big.name, big.size]); }}"
                        f"else {{ window.load_files_by_chunks($event.target.files, "
                        f"{{ trigger_name: '{triggers['upload_chunk']}' }}); }}"
                    ),
                )
            VSelect(v_if=("sai_data_files.length",), id="sai-data-file", label="Server file (--data)",
                    items=("sai_data_files",), v_model=("sai_data_file", None), density="compact",
                    hide_details=True, classes="mt-2",
                    # The chosen name must reach the handler: a bare callable would be called with no argument.
                    update_modelValue=(handlers["load_data_file"], "[$event]"))
            html.Div("{{ sai_volume_name || 'No volume loaded' }}", classes="text-caption mt-1", id="sai-volume")

            _section("Model")
            VSelect(id="sai-model", items=("sai_models",), v_model=("sai_model", None), density="compact",
                    hide_details=True, disabled=("sai_busy || sai_ft_running",))
            with VExpansionPanels(variant="accordion", classes="mt-1"):
                with VExpansionPanel():
                    VExpansionPanelTitle("Model card", classes="text-caption")
                    with VExpansionPanelText():
                        html.Pre("{{ sai_model_card }}", style="white-space: pre-wrap; font-size: 11px;")
            _catalog()
            with html.Div(classes="d-flex ga-2 mt-2"):
                VBtn("Segment", id="sai-segment", color="primary", prepend_icon="mdi-creation",
                     click=handlers["segment"], disabled=("sai_busy || !sai_volume_name",))
                VBtn("Cancel", id="sai-cancel", variant="outlined", click=handlers["cancel"],
                     disabled=("!sai_busy",))
            VProgressLinear(v_if=("sai_busy",), model_value=("sai_progress",), height=6, color="primary",
                            classes="mt-2", id="sai-progress")
            html.Div("{{ sai_progress_text }}", v_if=("sai_busy",), classes="text-caption")

            _section("Segments")
            with VList(density="compact", id="sai-segments"):
                # Clicking a name selects the segment that clicks, boxes, scribbles and the editor's effects change.
                with VListItem(v_for="s in sai_segments", key="s.id", classes="px-1 sai-segment",
                               active=("s.id === sai_active_segment",), color="primary",
                               raw_attrs=[':data-segment="s.name"', ':data-locked="s.locked"']):
                    with html.Div(classes="d-flex align-center ga-2"):
                        with html.Div(classes="d-flex align-center ga-2 sai-select", style="cursor: pointer;",
                                      click=(handlers["select_segment"], "[s.id]")):
                            html.Span(style=("{ background: s.color, width: '14px', height: '14px', "
                                             "borderRadius: '3px', display: 'inline-block' }",))
                            html.Span("{{ s.name }}", classes="text-body-2")
                        VSpacer()
                        html.Span("{{ s.ml }} mL", classes="text-caption sai-voxels",
                                  raw_attrs=[':data-voxels="s.voxels"'])
                        VBtn(icon=("s.visible ? 'mdi-eye' : 'mdi-eye-off'",), size="x-small", variant="text",
                             click=(handlers["toggle_visibility"], "[s.id]"), title="Show / hide")
                        VBtn(icon=("s.locked ? 'mdi-lock' : 'mdi-lock-open-variant-outline'",), size="x-small",
                             variant="text", classes="sai-lock", color=("s.locked ? 'warning' : undefined",),
                             click=(handlers["toggle_lock"], "[s.id]"),
                             title="Lock: clicks, boxes, scribbles and editor effects leave a locked segment unchanged")
            html.Div("No segments yet", v_if=("!sai_segments.length",), classes="text-caption")
            VBtn("Add segment", id="sai-add-segment", prepend_icon="mdi-plus", size="small", variant="text",
                 click=handlers["add_segment"], disabled=("!sai_volume_name || sai_busy",))

            _section("Refine with clicks, boxes and scribbles")
            with VBtnToggle(v_model=("sai_click_mode", "off"), mandatory=True, density="compact", divided=True,
                            variant="outlined", id="sai-click-mode", disabled=("!sai_segments.length || sai_busy",)):
                VBtn(value="off", id="sai-click-off", icon="mdi-cursor-default-outline", size="small", title="Off")
                VBtn("Object", value="positive", id="sai-click-positive", prepend_icon="mdi-plus-circle",
                     size="small", color="green")
                VBtn("Background", value="negative", id="sai-click-negative", prepend_icon="mdi-minus-circle",
                     size="small", color="red")
                VBtn("Box", value="box", id="sai-click-box", prepend_icon="mdi-selection", size="small",
                     color="amber-darken-2")
            html.Div("Click in a slice view to refine the selected segment ({{ sai_predictor }}).",
                     v_if=("sai_click_mode === 'positive' || sai_click_mode === 'negative'",),
                     classes="text-caption mt-1")
            html.Div("Click two opposite corners of a box on one slice: the selected segment is redrawn inside "
                     "it ({{ sai_predictor }}).", v_if=("sai_click_mode === 'box'",), classes="text-caption mt-1")
            # A second group on the same click mode: one mode at a time across both rows.
            with html.Div(classes="d-flex align-center ga-2 mt-2"):
                html.Span("Scribble", classes="text-caption")
                with VBtnToggle(v_model=("sai_click_mode", "off"), mandatory=True, density="compact", divided=True,
                                variant="outlined", id="sai-scribble-mode",
                                disabled=("!sai_segments.length || sai_busy",)):
                    VBtn("Object", value="scribble-positive", id="sai-click-scribble-positive",
                         prepend_icon="mdi-draw", size="small", color="green",
                         title="Object scribble: the stroke is added to the selected segment")
                    VBtn("Background", value="scribble-negative", id="sai-click-scribble-negative",
                         prepend_icon="mdi-draw", size="small", color="red",
                         title="Background scribble: the stroke is removed from the selected segment")
            with html.Div(v_if=("(sai_click_mode || '').startsWith('scribble')",), classes="mt-1"):
                html.Div("Click the stroke's points on one slice, then Finish stroke ({{ sai_predictor }}).",
                         classes="text-caption")
                VBtn("Finish stroke", id="sai-finish-scribble", prepend_icon="mdi-check", size="small",
                     variant="tonal", classes="mt-1", click=handlers["finish_scribble"],
                     disabled=("sai_scribble_points < 2 || sai_refining || sai_busy",))
                html.Span("{{ sai_scribble_points }} point(s)", classes="text-caption ml-2", id="sai-scribble-count")
            with html.Div(classes="d-flex ga-2 mt-2"):
                VBtn("Undo", id="sai-undo", prepend_icon="mdi-undo", size="small", click=handlers["undo"],
                     disabled=("!sai_can_undo || sai_busy",))
                VBtn("Redo", id="sai-redo", prepend_icon="mdi-redo", size="small", click=handlers["redo"],
                     disabled=("!sai_can_redo || sai_busy",))
            VProgressLinear(v_if=("sai_refining",), indeterminate=True, height=3, classes="mt-1")

            _section("Training")
            VBtn("Save as training case", id="sai-save-case", prepend_icon="mdi-content-save-plus", size="small",
                 click=handlers["save_case"], disabled=("!sai_segments.length || sai_busy",))
            html.Div("{{ sai_cases }} case(s) in {{ sai_dataset_dir }}", classes="text-caption mt-1",
                     id="sai-cases")
            with html.Div(classes="d-flex align-center ga-2 mt-2"):
                VTextField(v_model=("sai_ft_epochs", 5), type="number", label="Epochs", density="compact",
                           hide_details=True, style="max-width: 90px;")
                VBtn("Fine-tune", id="sai-finetune", prepend_icon="mdi-school", size="small",
                     click=handlers["finetune"],
                     disabled=("!sai_training_available || sai_cases < 1 || sai_ft_running || sai_busy",))
                VBtn("Stop", id="sai-finetune-cancel", size="small", variant="outlined",
                     click=handlers["finetune_cancel"], disabled=("!sai_ft_running",))
            html.Div("Fine-tuning needs the training package (segmentai_train).", v_if=("!sai_training_available",),
                     classes="text-caption text-disabled")
            VProgressLinear(v_if=("sai_ft_running",), model_value=("sai_ft_progress",), height=6, color="secondary",
                            classes="mt-2")
            html.Div("{{ sai_ft_text }}", classes="text-caption", id="sai-ft-text")
            VImg(v_if=("sai_ft_curve",), src=("sai_ft_curve",), max_height=180, classes="mt-1")

            _section("Download")
            with html.Div(classes="d-flex ga-2"):
                VBtn(".seg.nrrd", id="sai-download-seg", prepend_icon="mdi-download", size="small",
                     disabled=("!sai_segments.length",),
                     click=(f"utils.download(sai_volume_name + '.seg.nrrd', trigger('{triggers['download_seg']}'),"
                            " 'application/octet-stream')"))
                VBtn("NIfTI", id="sai-download-nii", prepend_icon="mdi-download", size="small",
                     disabled=("!sai_segments.length",),
                     click=(f"utils.download(sai_volume_name + '_labels.nii.gz', "
                            f"trigger('{triggers['download_nii']}'), 'application/gzip')"))


class WebUI:
    """Builds the page; exposes what trame-slicer's logics connect to (as its SegmentationAppUI does)."""

    def __init__(self, server, layout_manager, handlers, triggers) -> None:
        self.tool_registry = {}
        with ViewerLayout(server, title="SegmentAI", is_drawer_visible=True) as self.layout:
            self.layout.title.set_text("SegmentAI")
            self.data.active_tool = PANEL
            with self.layout.drawer:
                self.panel = SegmentAIPanel(handlers, triggers, v_if=(self._is_active(PANEL),))
                self.tool_registry[SegmentEditorUI] = SegmentEditorUI(v_if=(self._is_active(SegmentEditorUI.__name__),))
                self.tool_registry[VolumePropertyUI] = VolumePropertyUI(
                    v_if=(self._is_active(VolumePropertyUI.__name__),))
            with self.layout.toolbar:
                self._tool_button("mdi-creation", "SegmentAI", PANEL, always=True)
                self._tool_button("mdi-brush", "Segment Editor", SegmentEditorUI.__name__)
                self._tool_button("mdi-tune-variant", "Volume Properties", VolumePropertyUI.__name__)
                loaded = (f"!{self.layout.typed_state.name.is_volume_loaded}",)
                self.layout_button = LayoutButton(classes="mt-1", disabled=loaded)
                self.mpr_interaction_button = MprInteractionButton(classes="mt-1", disabled=loaded)
            with self.layout.undo_redo:
                SegmentEditorUndoRedoUI(editor_ui=self.tool_registry[SegmentEditorUI])
            with self.layout.content:
                layout_manager.initialize_layout_grid(self.layout)

    @property
    def data(self):
        return self.layout.typed_state.data

    def _is_active(self, tool: str) -> str:
        return f"{self.layout.typed_state.name.active_tool} === '{tool}'"

    def _tool_button(self, icon: str, name: str, tool: str, always: bool = False) -> None:
        state = self.layout.typed_state

        def toggle() -> None:
            visible = not state.data.is_drawer_visible or state.data.active_tool != tool
            state.data.is_drawer_visible = visible
            state.data.active_tool = tool if visible else None

        extra = {} if always else {"disabled": (f"!{state.name.is_volume_loaded}",)}
        ControlButton(icon=icon, name=name, click=toggle, active=(self._is_active(tool),), classes="mt-1", **extra)
