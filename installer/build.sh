#!/usr/bin/env bash
# Build the one-folder bundle with PyInstaller and smoke-test it (the built executable
# must answer --version and index a folder headless).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-build
.venv-build/bin/pip install -e '.[installer]'
.venv-build/bin/pyinstaller --noconfirm --distpath dist --workpath build installer/desktop-app.spec
./dist/desktop-app/desktop-app --version
tmp=$(mktemp -d)
DESKTOP_APP_HOME="$tmp" ./dist/desktop-app/desktop-app index tests/fixtures/photos \
  --model efficientnet-lite0 --json | tail -n 1
rm -rf "$tmp"
