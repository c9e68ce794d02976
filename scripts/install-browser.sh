#!/usr/bin/env bash
# Headless Chromium for the browser end-to-end tests (tests/test_dashboard_e2e.py,
# tests/test_family_pages_e2e.py): Debian's `chromium` package, driven by Playwright for Python through
# executable_path (no Playwright browser download), plus a CJK font so the Chinese pages render in the
# screenshots. Idempotent: installs only what is missing.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || missing+=(fonts-wqy-zenhei)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=""; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
command -v chromium
