#!/usr/bin/env bash
# Debian packages the web app's tests need: EGL/Mesa for VTK's offscreen rendering and chromium for
# Playwright (no browser download). Idempotent and non-interactive; installs only what is missing.
# Called by .ci/run (as root, with apt). On a developer machine without root it only reports what is
# missing: the browser tests then skip with that reason.
set -euo pipefail
packages=(libegl1 libegl-mesa0 libgl1-mesa-dri chromium)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "${SEGMENTAI_DRY_RUN:-0}" = "1" ]; then
    echo "system_deps: would install with apt-get, for the browser tests: ${missing[*]} (and their dependencies)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system_deps: apt-get not available; missing: ${missing[*]}" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        echo "system_deps: not root; missing: ${missing[*]} (the web tests will be skipped)" >&2
        exit 0
    fi
else
    sudo=()
fi
echo "Installing system-wide with apt-get, for the browser tests: ${missing[*]} and their dependencies" \
     "(SEGMENTAI_SKIP_BROWSER=1 skips this)"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
