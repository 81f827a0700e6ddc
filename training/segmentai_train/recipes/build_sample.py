"""Rebuild the bundled sample (Resources/SampleData) from the ROBEX reference head (BSD-3-Clause).

    python -m segmentai_train.recipes.build_sample Resources/SampleData

The source is float32 holding whole numbers only, so it is stored losslessly as int16.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..public_data import fetch_case


def build(dest: Path) -> None:
    import SimpleITK as sitk

    image, mask = fetch_case("robex")
    dest.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(image)), sitk.sitkInt16), str(dest / "sample_t1.nii.gz"), True)
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(mask)), sitk.sitkUInt8), str(dest / "sample_brain_mask.nii.gz"), True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m segmentai_train.recipes.build_sample",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, metavar="DEST",
                        help="folder that receives the sample (Resources/SampleData)")
    build(parser.parse_args(argv).dest)


if __name__ == "__main__":
    main()
