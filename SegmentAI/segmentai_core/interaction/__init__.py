"""Interactive refinement: clicks, boxes and scribbles re-segment one object in a local region.

Slicer-free and importable without torch: the model loads on the session's worker thread.
"""

from .predictors import (INTERACTIVE_CHANNELS, ModelPredictor, RandomWalkerPredictor, WorkingInputs,
                         find_interactive_model, is_interactive)
from .hybrid import HybridPredictor
from .prompts import Prompt, to_ijk
from .region import LocalRegion, RegionSettings, plan_region
from .session import InteractionSession, Update, default_predictor
from .worker import InteractionWorker

__all__ = [
    "INTERACTIVE_CHANNELS", "HybridPredictor", "InteractionSession", "InteractionWorker", "LocalRegion",
    "ModelPredictor", "Prompt",
    "RandomWalkerPredictor", "RegionSettings", "Update", "WorkingInputs", "default_predictor",
    "find_interactive_model", "is_interactive", "plan_region", "to_ijk",
]
