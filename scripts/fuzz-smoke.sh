#!/usr/bin/env bash
# Runs every fuzz target briefly: a smoke test that the parsers of outside
# input survive a few seconds of libFuzzer. Longer runs: see fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
seconds="${FUZZ_SECONDS:-10}"
for target in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
    echo "fuzz: $target for ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds" 2>&1 | grep -E '^Done|panicked|SUMMARY' || true
    # cargo fuzz exits non-zero on a crash; pipefail would hide the grep, so check artifacts.
    if compgen -G "artifacts/$target/crash-*" >/dev/null; then
        echo "fuzz: $target crashed; see fuzz/artifacts/$target" >&2
        exit 1
    fi
done
