#!/usr/bin/env bash
# A publish dry run of the five library crates in one multi-package run
# (manifests, metadata, included files, dependency versions), then the crates
# built from their packages: the embedder manuals' examples compile in a crate
# outside the workspace (examples/embed-check) that depends on the packages
# only. That build is the verification `cargo publish` would do, once for all
# five instead of five times, which keeps CI within its time.
set -euo pipefail
cd "$(dirname "$0")/.."
crates=(mailtls-core mailtls-sni mailtls-policy mailtls-smime mailtls-acme)
args=()
for c in "${crates[@]}"; do args+=(-p "$c"); done
cargo publish --dry-run --allow-dirty --no-verify "${args[@]}"
# `cargo package` leaves each crate unpacked under target/package; the check
# crate patches crates.io to those directories.
cargo package --allow-dirty --no-verify "${args[@]}" >/dev/null
for c in "${crates[@]}"; do
    v=$(cargo pkgid -p "$c" | sed 's/.*[#@]//')
    rm -rf "target/package/$c-$v"
    tar -xzf "target/package/$c-$v.crate" -C target/package
done
cd examples/embed-check
# The same dependency versions as the workspace, so built ones are reused.
cp ../../Cargo.lock Cargo.lock
CARGO_TARGET_DIR="$PWD/../../target" cargo test --doc
