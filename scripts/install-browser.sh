#!/usr/bin/env bash
# Headless Chromium for the dashboard end-to-end tests (tests/test_dashboard_e2e.py): Debian's
# `chromium` package, driven by Playwright for Python through executable_path (no Playwright browser
# download). Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=""; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium
