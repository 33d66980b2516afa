#!/bin/sh
# Installs the Debian 12 / Ubuntu 24.04 packages that building and testing smartcity needs.
# As root it runs apt-get itself; otherwise it prints the exact command and fails.
# chromium runs the browser tests (tests/browser, Playwright with executable_path=/usr/bin/chromium).
# On Ubuntu 24.04 the chromium deb is only a shim that installs the snap: the snap's binary is
# /snap/bin/chromium (also reachable as chromium-browser); the tests accept either path.
set -eu

PACKAGES="build-essential cmake ninja-build pkg-config python3-dev python3-venv \
libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg \
libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libgtest-dev clang-format \
python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
gstreamer1.0-plugins-bad chromium"

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system-packages.sh: not a Debian/Ubuntu system; install the equivalents of: $PACKAGES" >&2
  exit 1
fi

missing=""
for p in $PACKAGES; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  case "$status" in
    *"ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "Installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
else
  echo "Missing system packages:$missing" >&2
  echo "Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi
