# `nix flake check`'s Rust checks: rustfmt, clippy, and the two tiers that
# need no Dynamo env and no GPU, run by nextest exactly as `cargo xtask test
# --tier unit|integration` runs them (same profiles, .config/nextest.toml).
# clippy and both tiers start from nix/rust.nix's dependency artifacts
# (crane's buildDepsOnly): the dependencies are compiled once for all of
# them, and for the packages.
#
# The tiers' sandbox has what their tests run, and nothing is downloaded:
#   - the Rust toolchain of rust-toolchain.toml (crane's), cargo-nextest, and
#     git (the bisect test builds a scratch repository);
#   - every pinned tool of nix/pins.toml, named by its override variable
#     (TESTBED_NATS_SERVER, TESTBED_ETCD, TESTBED_PROTOC, TESTBED_UV,
#     TESTBED_CHART_FONT) and PROTOC. The testbed takes tools from those
#     variables, never from PATH, so they are not put on PATH: with all of
#     them set, the tests' own `cargo xtask test --tier …` runs provision
#     nothing;
#   - HOME, the testbed's cache and its state folder under $TMPDIR.
# The integration tier's nats-server and etcd listen on the sandbox's own
# loopback.
#
# Each tier check keeps the tier's JUnit report as its output
# (result/junit.xml).
#
# Imported by flake.nix with its arguments; uses builtins rather than lib so
# that nix/check-offline.sh can evaluate it against stub packages.
{
  craneLib,
  rust,
  tools,
  git,
}:
let
  inherit (rust) commonArgs cargoArtifacts source;

  tier = profile:
    craneLib.cargoNextest (commonArgs // tools.env // {
      pname = "testbed-${profile}";
      # The build's sources and what the tests read (nix/lib/source.nix).
      src = source.tests;
      inherit cargoArtifacts;
      nativeBuildInputs = [ git ];
      cargoExtraArgs = "--locked --offline";
      cargoNextestExtraArgs = "--profile ${profile}";
      preCheck = ''
        export HOME=$TMPDIR/home XDG_CACHE_HOME=$TMPDIR/xdg-cache
        export TESTBED_CACHE_DIR=$TMPDIR/testbed-cache TESTBED_STATE_DIR=$TMPDIR/testbed-state
        mkdir -p "$HOME" "$XDG_CACHE_HOME" "$TESTBED_CACHE_DIR" "$TESTBED_STATE_DIR"
      '';
      # The JUnit report, not the target folder.
      doInstallCargoArtifacts = false;
      installPhaseCommand = ''
        mkdir -p $out
        cp target/nextest/${profile}/junit.xml $out/junit.xml
      '';
    });
in
{
  fmt = craneLib.cargoFmt {
    inherit (commonArgs) pname version src;
    cargoExtraArgs = "--all";
  };

  clippy = craneLib.cargoClippy (commonArgs // {
    inherit cargoArtifacts;
    cargoClippyExtraArgs = "--workspace --all-targets -- -D warnings";
    doInstallCargoArtifacts = false;
  });

  unit = tier "unit";
  integration = tier "integration";
}
