"""The MRML layer's shared test cases (``unittest.TestCase`` classes on a real MRML scene).

Slicer's self-test (``SegmentAITest`` in ``SegmentAI.py``) and pytest on slicer-core
(``Testing/Python/test_mrml_layer.py``) run the same cases: :mod:`.cases` (volumes, segmentations,
markups, editing, the panel workflow), :mod:`.placement` (prompt placement on oblique grids) and
:mod:`.scene` (the phantom scene and tiny package they share).
"""
