#!/usr/bin/env bash
# Segment the bundled sample with the bundled default model (sets up .venv first, with the runtime only:
# scripts/test.sh adds the test extra). SEGMENTAI_DRY_RUN=1 prints what would be installed and stops.
# Writes demo-output/: the sample, its segmentation (.seg.nrrd), a PNG overview and Dice scores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/venv.sh"
out="${1:-$root/demo-output}"
segmentai sample -o "$out" --overwrite
segmentai segment "$out/sample_t1.nii.gz" -o "$out/sample_t1.seg.nrrd" --overwrite --overview "$out/overview.png"
segmentai evaluate "$out/sample_t1.seg.nrrd" "$out/sample_brain_mask.nii.gz"
echo "Wrote $out/sample_t1.seg.nrrd and $out/overview.png"
