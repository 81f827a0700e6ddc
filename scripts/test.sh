#!/usr/bin/env bash
# Run the whole test suite (sets up .venv first: the runtime plus the test extra). Extra arguments go
# to pytest.
#
# The browser tests of the web app need Debian packages installed system-wide: EGL/Mesa for VTK's
# offscreen rendering and chromium for Playwright. As root (or with password-less sudo) this script
# installs the missing ones with apt-get (chromium brings about 20 more packages); otherwise it only
# says what is missing and those tests skip. SEGMENTAI_SKIP_BROWSER=1 installs nothing system-wide.
# SEGMENTAI_DRY_RUN=1 prints what would be installed and stops.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${SEGMENTAI_SKIP_BROWSER:-0}" = "1" ]; then
    echo "SEGMENTAI_SKIP_BROWSER=1: no system packages installed (the browser tests skip where chromium is missing)"
else
    bash "$root/scripts/system_deps.sh"
fi
export SEGMENTAI_EXTRAS="${SEGMENTAI_EXTRAS:-test}"
# TotalSegmentator, for its parity test (Testing/Python/test_totalsegmentator_parity.py): the package and
# dicom2nifti, which it imports, without their dependencies (what it needs to run is in the test extra),
# in a folder of its own that only that test's subprocesses put on their path.
totalseg_version="2.18.0"
export SEGMENTAI_TOTALSEG_SITE="${SEGMENTAI_VENV:-$root/.venv}/totalseg-site"
if [ "${SEGMENTAI_DRY_RUN:-0}" = "1" ]; then
    echo "  TotalSegmentator $totalseg_version and dicom2nifti (about 2 MB, no dependencies) into $SEGMENTAI_TOTALSEG_SITE"
fi
source "$root/scripts/venv.sh"
cd "$root"
if [ ! -d "$SEGMENTAI_TOTALSEG_SITE/totalsegmentator-$totalseg_version.dist-info" ]; then
    echo "Installing TotalSegmentator $totalseg_version into $SEGMENTAI_TOTALSEG_SITE (for its parity test)"
    rm -rf "$SEGMENTAI_TOTALSEG_SITE"
    python -m pip install --quiet --no-deps --target "$SEGMENTAI_TOTALSEG_SITE" \
        "totalsegmentator==$totalseg_version" "dicom2nifti>=2.4,<3" >>"${SEGMENTAI_VENV:-$root/.venv}/install.log" 2>&1 \
        || echo "TotalSegmentator could not be installed (see the install log): its parity test skips" >&2
fi
set +e
python -m pytest "$@"
status=$?
set -e
# pytest exits 5 when it collected no test: that must fail, never pass silently.
if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
