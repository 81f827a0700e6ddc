"""File input/output of the core: volumes, label maps and Slicer ``.seg.nrrd`` segmentations.

Reads NRRD, NIfTI, MetaImage and DICOM series folders with SimpleITK (geometry kept exactly,
truncated files refused), and writes outputs atomically so that no partial file is ever left.
"""

from .segmentation_io import (
    read_labelmap,
    read_segmentation,
    segmentation_metadata,
    with_segment,
    write_labelmap,
    write_segmentation,
)
from .volume_io import read_volume, write_volume

__all__ = [
    "read_labelmap",
    "read_segmentation",
    "read_volume",
    "segmentation_metadata",
    "with_segment",
    "write_labelmap",
    "write_segmentation",
    "write_volume",
]
