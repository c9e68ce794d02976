#!/bin/sh
# Install the pinned third-party npm peers (tests/test_peers.py) into peers/node_modules.
# Idempotent: does nothing when the pinned versions are already installed. Without Node.js/npm it
# says so and exits 0; the peer tests then skip with that reason.
# One install at a time (peers/.install.lock): a second `npm ci` empties node_modules under the first.
# tests/peers_support.py holds that lock itself while it runs this script (WXPARTNER_PEERS_LOCKED).
set -eu
cd "$(dirname "$0")/../peers"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "install-peers: node/npm not found; npm peer tests will be skipped" >&2
    exit 0
fi
if [ -z "${WXPARTNER_PEERS_LOCKED:-}" ] && command -v flock >/dev/null 2>&1; then
    export WXPARTNER_PEERS_LOCKED=1
    exec flock .install.lock "$(pwd)/../scripts/install-peers.sh"
fi
installed() {  # installed NAME VERSION -> true if node_modules holds exactly that version
    node -e "process.exit(require('./node_modules/$1/package.json').version === '$2' ? 0 : 1)" 2>/dev/null
}
if installed wechatpay-axios-plugin 0.9.6 && installed wechatpay-node-v3 2.2.1; then
    exit 0
fi
# package-lock.json pins the transitive versions too once it exists (npm ci), else resolve once.
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi
