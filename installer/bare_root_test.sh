#!/usr/bin/env bash
# Check the .deb's Depends on a bare system: install it with apt into a minimal Debian
# root (debootstrap --variant=minbase: no X, no Qt, no Python), which pulls in exactly
# the Depends, then run the smoke test (headless searches and the window under Xvfb)
# against the app inside that root.
#   sudo installer/bare_root_test.sh dist/desktop-app_0.1.0_amd64.deb [ROOTFS]
# Needs root, debootstrap, Xvfb and xwininfo on the host, and the Debian mirror. Host
# /tmp is bind-mounted into the root, so the smoke test's files (and the X socket) have
# the same paths on both sides. Not part of `make installer` (it needs root and a mirror).
set -euo pipefail
cd "$(dirname "$0")/.."
deb="$(realpath "$1")"
rootfs="${2:-/var/tmp/desktop-app-bare-root}"
suite="${SUITE:-bookworm}"
python="${PYTHON:-.venv-build/bin/python}"

if [ ! -x "$rootfs/usr/bin/apt-get" ]; then
  debootstrap --variant=minbase "$suite" "$rootfs" http://deb.debian.org/debian
fi
if chroot "$rootfs" sh -c 'command -v python3' >/dev/null; then
  echo "bare_root_test: $rootfs has a Python; use a fresh root" >&2
  exit 1
fi
mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" || true; done; }
trap cleanup EXIT
mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")
mount --bind /dev "$rootfs/dev" && mounted+=("$rootfs/dev")
mount --bind /tmp "$rootfs/tmp" && mounted+=("$rootfs/tmp")

cp "$deb" "/tmp/$(basename "$deb")"
chroot "$rootfs" apt-get update -q
chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "/tmp/$(basename "$deb")"
chroot "$rootfs" dpkg -s desktop-app | sed -n 's/^\(Installed-Size\|Depends\):/  &/p'

# The app, run inside the root, as a one-file PATH for the smoke driver (host side).
wrapper="$(mktemp -d /tmp/desktop-app-chroot.XXXX)"
samples="$wrapper/samples"
cp -r "$rootfs/usr/lib/desktop-app/_internal/resources/samples" "$samples"
cat >"$wrapper/desktop-app" <<WRAP
#!/bin/sh
exec /usr/sbin/chroot "$rootfs" /usr/bin/desktop-app "\$@"
WRAP
chmod +x "$wrapper/desktop-app"
status=0
"$python" installer/smoke.py "$wrapper/desktop-app" --path "$wrapper" --samples "$samples" \
  --screenshot "${SCREENSHOT:-dist/bare-root-window.png}" || status=$?
rm -rf "$wrapper" "/tmp/$(basename "$deb")"
exit $status
