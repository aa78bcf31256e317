#!/usr/bin/env bash
# Tests each published crate with no default features plus exactly the
# features one use needs, and core, sni, policy and acme on the ring
# provider. `cargo test --workspace` (the README's test command) already runs
# every crate with its default features.
set -euo pipefail
cd "$(dirname "$0")/.."

# crate | features after --no-default-features
sets=(
  "mailtls-core|aws-lc-rs"
  "mailtls-core|ring,maker"
  "mailtls-sni|aws-lc-rs"
  "mailtls-sni|ring,watch"
  "mailtls-policy|aws-lc-rs"
  "mailtls-policy|ring,hickory,fetch,tlsrpt-deliver,tlsrpt-received,postgres"
  "mailtls-smime|"
  "mailtls-acme|aws-lc-rs"
  "mailtls-acme|ring,reqwest,webpki-roots,http01-server,dns01-rfc2136,dns01-hook"
)
log=$(mktemp)
stamp=$(mktemp)
trap 'rm -f "$log" "$stamp"' EXIT
fail=0
for set in "${sets[@]}"; do
    IFS='|' read -r crate features <<<"$set"
    args=(-p "$crate" --no-default-features)
    [ -n "$features" ] && args+=(--features "$features")
    echo "feature-matrix: cargo test ${args[*]}"
    touch "$stamp"
    if cargo test "${args[@]}" >"$log" 2>&1; then
        grep -E '^test result' "$log" | awk '{p+=$4; f+=$6} END {print "feature-matrix:   " p " passed, " f " failed"}'
    else
        fail=1
        grep -vE '^(   Compiling|    Finished|     Running|   Doc-tests)' "$log" | tail -60
        echo "feature-matrix: FAILED: cargo test ${args[*]}" >&2
    fi
    # Each set links its own test executables (hundreds of MB each) that no
    # later step reuses; dropping them keeps the run within a small disk.
    find target/debug/deps -maxdepth 1 -type f -perm -u+x ! -name '*.so' -newer "$stamp" -delete 2>/dev/null || true
done
exit "$fail"
