# The parts of the checkout that the Rust derivations see, so that an edit
# elsewhere (this README, the Nix files, nix/python/README.md, .ci/…) changes
# no store path and rebuilds nothing.
#
#   build: what compiling, clippy and rustfmt read: the Rust sources and
#     manifests of the workspace's trees, Cargo.lock, .cargo/config.toml,
#     clippy.toml (and rustfmt.toml, should one appear). The dependency
#     build (crane's buildDepsOnly) keeps only the manifests of this.
#   tests: build, plus what the unit and integration tiers read at run time:
#     .config/nextest.toml (the tier profiles), tests/needs.toml,
#     nix/pins.toml, the Python locks nix/python/*.lock and their pylock
#     twins, and rust-toolchain.toml. README.md, .ci/run, flake.nix and
#     flake.lock are inputs only because xtask's tidy tests read them
#     (xtask/src/tidy.rs: the README's tier table and commands, the same
#     commands in .ci/run, and the top-level layout): editing them re-runs
#     the two tier checks, and nothing else.
#
# Pure (builtins only): nix/check-offline.sh evaluates it without nixpkgs.
{ root }:
let
  inherit (builtins) any elem match stringLength substring;

  rootString = toString root;
  relative = path: substring (stringLength rootString + 1) (stringLength path) path;

  crateTree = "(xtask|drivers|tests)(/.*)?";

  buildFile = rel:
    match "(xtask|drivers|tests)/.*\\.rs" rel != null
    || match "((xtask|drivers|tests)/(.*/)?)?Cargo\\.toml" rel != null
    || elem rel [ "Cargo.lock" ".cargo/config.toml" "clippy.toml" "rustfmt.toml" ".rustfmt.toml" ];
  buildDir = rel: match crateTree rel != null || rel == ".cargo";

  testFile = rel:
    buildFile rel
    || elem rel [
      ".config/nextest.toml"
      "tests/needs.toml"
      "nix/pins.toml"
      "rust-toolchain.toml"
      # Read by the tidy tests (xtask/src/tidy.rs), nothing else.
      "README.md"
      ".ci/run"
      "flake.nix"
      "flake.lock"
    ]
    || match "nix/python/[^/]+\\.lock|nix/python/pylock\\.[^/]+\\.toml" rel != null;
  testDir = rel: buildDir rel || elem rel [ ".config" "nix" "nix/python" ".ci" ];

  # Never descended into, wherever they are.
  ignoredDir = rel: any (pattern: match pattern rel != null) [ "(.*/)?target" "(.*/)?\\.git" "(.*/)?result.*" ];

  select = name: wantFile: wantDir:
    builtins.path {
      path = root;
      inherit name;
      filter = path: type:
        let rel = relative path; in
        if type == "directory" then wantDir rel && !(ignoredDir rel)
        else wantFile rel;
    };
in
{
  build = select "testbed-source" buildFile buildDir;
  tests = select "testbed-test-source" testFile testDir;
  # The predicates, for nix/check-offline.sh.
  inherit buildFile testFile;
}
