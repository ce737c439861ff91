#!/usr/bin/env bash
# macOS: wrap the .app that installer/build.py made (PyInstaller's BUNDLE step in
# installer/desktop-app.spec writes dist/VARIANT/desktop-app.app with its Info.plist and
# .icns) into a drag-to-Applications disk image. Runs on macOS only (hdiutil); run by
# .github/workflows/installer-macos.yml.
#   python installer/build.py --variant cpu && installer/macos/make_dmg.sh cpu
# Signing and notarisation need a Developer ID: when CODESIGN_IDENTITY is set the .app is
# signed (hardened runtime) before it is imaged; notarise the .dmg afterwards with
# `xcrun notarytool submit --wait`.
set -euo pipefail
cd "$(dirname "$0")/../.."
variant="${1:-cpu}"
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' desktop_app/__init__.py)"
app="dist/$variant/desktop-app.app"
arch="$(uname -m)"
dmg="dist/desktop-app-$version-macos-$arch-$variant.dmg"
[ -d "$app" ] || { echo "make_dmg: $app not found; run installer/build.py first" >&2; exit 1; }
/usr/libexec/PlistBuddy -c 'Print :CFBundleIdentifier' "$app/Contents/Info.plist"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$app"
  codesign --verify --deep --strict "$app"
fi

staging="$(mktemp -d)"
trap 'rm -rf "$staging"' EXIT
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
rm -f "$dmg"
hdiutil create -volname "desktop-app $version" -srcfolder "$staging" -fs HFS+ \
  -format UDZO -imagekey zlib-level=9 "$dmg"
hdiutil verify "$dmg"
ls -l "$dmg"
