#!/usr/bin/env bash
# Parses and evaluates the Nix side of the repository without network access:
# nixpkgs and the binary cache are unreachable from the CI machines, so
# nothing is built here. Needs Nix >= 2.4 (Debian's `nix-bin` is enough).
#
#   1. every .nix file parses;
#   2. flake.lock locks each input of flake.nix to a rev + narHash;
#   3. nix/pins.toml reads as the flake reads it;
#   4. the Dynamo pylock and the requirements lock agree (packages, versions,
#      hashes) and give one usable wheel per package; tampered inputs fail;
#   5. nix/services.nix picks nixpkgs' or Debian's binaries by the pins;
#   6. every flake output (packages, devShells, checks) instantiates against
#      offline stand-ins for nixpkgs and rust-overlay (nix/offline-stubs/),
#      and the shells carry the pinned programs;
#   7. `nix flake metadata` reads flake.lock, and `nix flake check --no-build`
#      passes with the inputs overridden by the stand-ins.
#
# Exits non-zero on the first failure. Usage: nix/check-offline.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

for tool in nix-instantiate nix; do
  command -v "$tool" >/dev/null || { echo "check-offline: $tool not found (apt-get install -y nix-bin)" >&2; exit 1; }
done
nixx=(nix --extra-experimental-features 'nix-command flakes')
echo "check-offline: $(nix --version)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { echo; echo "== $*"; }

# Runs a command, showing its output without the repeated evaluation notes
# of nix/services.nix; fails as the command fails.
run() {
  if ! "$@" >"$work/out" 2>&1; then
    cat "$work/out" >&2
    echo "check-offline: FAILED: $*" >&2
    exit 1
  fi
  grep -v '^trace: note:' "$work/out" || true
}

eval_attr() {
  run nix-instantiate --eval --strict --readonly-mode nix/offline-stubs/eval.nix -A "$1"
}

step "1. parse every .nix file"
mapfile -t files < <(find . \( -path ./target -o -path ./.git -o -name 'result*' \) -prune -o -name '*.nix' -print | sort)
for f in "${files[@]}"; do
  run nix-instantiate --parse "$f" >/dev/null
  echo "parsed $f"
done
[ "${#files[@]}" -gt 0 ] || { echo "check-offline: no .nix files found" >&2; exit 1; }

step "2. flake.lock pins every input of flake.nix"
eval_attr lock

step "3. nix/pins.toml as the flake reads it"
eval_attr pins

step "4. Dynamo pylock vs requirements lock"
eval_attr pylock

step "5. services: pinned versions, nixpkgs or Debian"
eval_attr services
# Once, so the log says which source each service will come from.
nix-instantiate --eval --strict --readonly-mode nix/offline-stubs/eval.nix -A services 2>&1 | grep '^trace: note:' | sort -u || true

step "6. every flake output instantiates (against nix/offline-stubs)"
eval_attr drvs | tr ';' '\n' | sed -n 's/.*\(\/nix\/store\/[^"]*\.drv\).*/drv \1/p'
eval_attr shells

step "7. nix flake metadata / nix flake check --no-build"
# A copy, as a path: flake, so that files git does not track yet count too.
mkdir "$work/flake"
tar -C "$repo" --exclude=./target --exclude=./.git --exclude='./result*' -cf - . | tar -C "$work/flake" -xf -
run "${nixx[@]}" flake metadata --no-write-lock-file "path:$work/flake"
for rev in $(sed -n 's/.*"rev": "\([0-9a-f]\{40\}\)".*/\1/p' flake.lock); do
  grep -q "$rev" "$work/out" || { echo "check-offline: flake metadata does not show locked rev $rev" >&2; exit 1; }
done
run "${nixx[@]}" flake check --no-build --no-write-lock-file "path:$work/flake" \
  --override-input nixpkgs "path:$repo/nix/offline-stubs/nixpkgs" \
  --override-input rust-overlay "path:$repo/nix/offline-stubs/rust-overlay"
echo "flake check --no-build: ok"

echo
echo "check-offline: all checks passed (parse + offline evaluation only; nothing was built)"
