"""The panel's state: names and defaults of the values mirrored in the browser.

Plain ``sai_*`` keys (rather than nested dataclasses) keep the page's expressions short and the
keys easy to find from tests and from the browser's console.
"""

from __future__ import annotations

from typing import Any, Dict

__all__ = ["DEFAULTS"]

DEFAULTS: Dict[str, Any] = {
    "sai_message": "",  # one line shown above the panel (an error or a notice)
    "sai_message_type": "info",  # info / success / warning / error
    "sai_volume_name": "",
    "sai_data_files": [],  # images under --data (relative paths)
    "sai_data_file": None,
    "sai_max_upload_mb": 1024,
    "sai_models": [],  # [{"title": ..., "value": id@version}]
    "sai_model": None,
    "sai_model_card": "",
    "sai_busy": False,  # a segmentation is running
    "sai_progress": 0.0,  # 0..100
    "sai_progress_text": "",
    "sai_segments": [],  # [{"id", "name", "color", "voxels", "ml", "visible", "locked"}]
    "sai_active_segment": "",  # the segment that clicks, boxes, scribbles and editor effects change
    # off / positive / negative / box (two clicks: opposite corners) / scribble-positive / scribble-negative
    "sai_click_mode": "off",
    "sai_scribble_points": 0,  # points of the stroke being drawn (Finish stroke needs two or more)
    "sai_refining": False,
    "sai_predictor": "",
    "sai_can_undo": False,
    "sai_can_redo": False,
    "sai_dataset_dir": "",
    "sai_cases": 0,
    "sai_training_available": False,
    "sai_ft_running": False,
    "sai_ft_progress": 0.0,
    "sai_ft_text": "",
    "sai_ft_epochs": 5,
    "sai_ft_curve": "",  # data: URL of the training curve
}
