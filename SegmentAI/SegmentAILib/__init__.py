"""The SegmentAI Slicer module's own code beside the module file: the panel's handlers (:mod:`.widget`).

Imported only inside Slicer (or by tests on slicer-core); never by the core or the web app.
"""
