#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root).
# Tests talk to real peers: OpenSSL's s_client, x509, req and verify.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: not root; assuming the packages are present" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends openssl ca-certificates >/dev/null
