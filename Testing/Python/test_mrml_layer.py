"""The MRML layer against real MRML (slicer-core): runs the shared unittest cases of segmentai_mrml.tests.cases.

The same classes run inside Slicer through SegmentAITest.runTest(), so they live in the package.
"""

from __future__ import annotations

import pytest

pytest.importorskip("slicer_core", reason="slicer-core (MRML) is needed: pip install -e '.[test]'")

from segmentai_mrml.tests.cases import (
    DefaultModelTest,
    MRMLLayerTest,
    PromptPlacementTest,
    RefineAndSaveTest,
    SegmentationLogicTest,
)

__all__ = ["DefaultModelTest", "MRMLLayerTest", "PromptPlacementTest", "RefineAndSaveTest", "SegmentationLogicTest"]
