#!/usr/bin/env bash
# Run the whole test suite (sets up .venv first). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Debian packages for the browser tests (EGL, chromium): installed when missing and root.
bash "$root/scripts/system_deps.sh"
source "$root/scripts/venv.sh"
cd "$root"
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
