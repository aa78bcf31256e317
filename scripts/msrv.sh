#!/usr/bin/env bash
# Checks that the workspace's declared rust-version is true for the published
# crates' dependencies: no crate in their normal dependency tree (all
# features) may declare a newer rust-version. Our own code is held to it by
# clippy's `incompatible_msrv` lint, which reads the same field.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --all-features | python3 -c '
import json, sys
meta = json.load(sys.stdin)
pkgs = {p["id"]: p for p in meta["packages"]}
published = {p["id"] for p in meta["packages"]
             if p["id"] in meta["workspace_members"] and p.get("publish") != []}
declared = {pkgs[i]["rust_version"] for i in published}
if len(declared) != 1:
    sys.exit(f"msrv: published crates declare different rust-versions: {declared}")
declared = declared.pop()
def key(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
seen, stack = set(), list(published)
while stack:
    i = stack.pop()
    if i in seen:
        continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] in (None, "build") for k in d["dep_kinds"]):
            stack.append(d["pkg"])
worst = sorted(((key(pkgs[i]["rust_version"]), pkgs[i]["name"], pkgs[i]["version"], pkgs[i]["rust_version"])
               for i in seen if pkgs[i].get("rust_version")), reverse=True)
top = worst[0]
print(f"msrv: declared {declared}; highest dependency requirement {top[3]} ({top[1]} {top[2]})")
bad = [w for w in worst if w[0] > key(declared)]
for w in bad:
    print(f"msrv: {w[1]} {w[2]} needs Rust {w[3]}", file=sys.stderr)
sys.exit(1 if bad else 0)
'
