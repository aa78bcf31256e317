#!/usr/bin/env bash
# Counts what each use of the published crates pulls in (unique crate names in
# `cargo tree -e normal`, the crate itself included) and fails when a count is
# over its budget. The budgets for SNI and for policy parsing + plan + verifier
# are the ones the crates promise in their READMEs; the others are ceilings
# that catch an accidental new dependency.
set -euo pipefail
cd "$(dirname "$0")/.."

# crate | features (after --no-default-features) | budget | use
cases=(
  "mailtls-core|aws-lc-rs|50|names, patterns, loading, inspection"
  "mailtls-core|ring|52|the same on ring"
  "mailtls-core|aws-lc-rs,maker|55|with the certificate maker"
  "mailtls-sni|aws-lc-rs|75|SNI resolution"
  "mailtls-sni|ring|75|SNI resolution on ring"
  "mailtls-sni|aws-lc-rs,watch|80|SNI with directory watching"
  "mailtls-policy|aws-lc-rs|85|MTA-STS/TLS-RPT parsing, plan, verifier, collector"
  "mailtls-policy|ring|85|the same on ring"
  "mailtls-smime||50|S/MIME engine (sign, verify, encrypt, decrypt)"
  "mailtls-smime|gateway|95|S/MIME engine and gateway"
  "mailtls-acme|aws-lc-rs|70|ACME client core, bring your own HTTP client"
  "mailtls-acme|aws-lc-rs,reqwest,webpki-roots|115|ACME client with reqwest (the default)"
)

count() {
    local crate=$1 features=$2
    local args=(-e normal --prefix none -p "$crate" --no-default-features)
    [ -n "$features" ] && args+=(--features "$features")
    cargo tree "${args[@]}" | sed 's/ v.*//' | sort -u | wc -l
}

fail=0
printf '%-16s %-22s %6s %6s  %s\n' crate features crates budget use
for case in "${cases[@]}"; do
    IFS='|' read -r crate features budget use <<<"$case"
    n=$(count "$crate" "$features")
    mark=ok
    if [ "$n" -gt "$budget" ]; then mark=OVER; fail=1; fi
    printf '%-16s %-22s %6s %6s  %s %s\n' "$crate" "${features:-(none)}" "$n" "$budget" "$use" "$mark"
done
# Whole-tree rules: one hickory, and no second rustls provider on ring.
hickory=$(cargo tree -e normal --prefix none --workspace 2>/dev/null | grep -o '^hickory-proto v[0-9.]*' | sort -u | wc -l)
echo "hickory-proto versions in the workspace tree: $hickory"
if [ "$hickory" -gt 1 ]; then echo "dep-budget: more than one hickory-proto version" >&2; fail=1; fi
for crate in mailtls-core mailtls-sni mailtls-policy mailtls-acme; do
    if cargo tree -e normal --prefix none -p "$crate" --no-default-features --features ring | grep -q '^aws-lc-rs '; then
        echo "dep-budget: $crate on ring still pulls aws-lc-rs" >&2; fail=1
    fi
done
exit "$fail"
