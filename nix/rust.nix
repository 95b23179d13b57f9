# The workspace, built with crane: its dependencies once (buildDepsOnly, from
# the manifests and Cargo.lock alone), then everything else on top of those
# artifacts: the packages here, and clippy and the two test tiers in
# nix/checks.nix.
#
# All of them share one set of arguments, so that cargo's fingerprints match
# and nothing is compiled twice:
#   - cargo's own profiles, not crane's default `--release`: dev for build,
#     check and clippy, test for nextest, as `cargo xtask test` and a plain
#     `cargo nextest run` use them outside Nix (and as the tests' own nested
#     `cargo xtask` runs use them inside the checks);
#   - PROTOC, the pinned protoc: etcd-client's build script compiles its
#     .proto files with it, and an environment PROTOC wins over the
#     .testbed/bin/protoc of .cargo/config.toml.
#
# Imported by flake.nix with its arguments; uses builtins rather than lib so
# that nix/check-offline.sh can evaluate it against stub packages.
{
  craneLib,
  tools,
  # The checkout (a path): filtered by nix/lib/source.nix.
  root,
  version,
}:
let
  source = import ./lib/source.nix { inherit root; };

  commonArgs = {
    pname = "dynamo-testbed";
    inherit version;
    src = source.build;
    strictDeps = true;
    CARGO_PROFILE = "";
    PROTOC = tools.paths.protoc;
  };

  # crane's default steps (check all targets, build, `cargo test --no-run`),
  # plus the two binaries alone: a package built by itself unifies the
  # features of its own dependencies only, so `--package xtask` (the
  # package below, and `cargo xtask` = `cargo run --package xtask` in the
  # tests) and `--package testbed-runner` (which xtask builds) may need
  # dependency builds that the workspace-wide one does not make.
  cargoArtifacts = craneLib.buildDepsOnly (commonArgs // {
    buildPhaseCargoCommand = ''
      cargoWithProfile check --locked --all-targets
      cargoWithProfile build --locked
      cargoWithProfile build --locked --package xtask
      cargoWithProfile build --locked --package testbed-runner
    '';
  });

  # One binary of the workspace (the tier checks run the tests). Nothing
  # sets TESTBED_REPO_ROOT here: `nix run .#xtask` finds the checkout it is
  # run in (the nearest folder up holding nix/pins.toml and Cargo.toml), or
  # is told by TESTBED_REPO_ROOT at run time.
  binary = crate: craneLib.buildPackage (commonArgs // {
    pname = crate;
    inherit cargoArtifacts;
    cargoExtraArgs = "--locked --package ${crate}";
    doCheck = false;
    meta.mainProgram = crate;
  });
in
{
  inherit source commonArgs cargoArtifacts;
  xtask = binary "xtask";
  testbed-runner = binary "testbed-runner";
}
