#!/usr/bin/env bash
# Runs every fuzz target briefly (or only the targets named as arguments): a
# smoke test that the parsers of outside input survive a few seconds of
# libFuzzer, and that the property targets (policy_sts_never_weaker: a
# lenient reading is never weaker than the strict one) hold. Longer runs:
# see fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
seconds="${FUZZ_SECONDS:-10}"
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
for target in "${targets[@]}"; do
    echo "fuzz: $target for ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds" 2>&1 | grep -E '^Done|panicked|SUMMARY' || true
    # cargo fuzz exits non-zero on a crash; pipefail would hide the grep, so check artifacts.
    if compgen -G "artifacts/$target/crash-*" >/dev/null; then
        echo "fuzz: $target crashed; see fuzz/artifacts/$target" >&2
        exit 1
    fi
done
