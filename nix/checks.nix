# `nix flake check`: formatting, clippy, and the two tiers that need no
# Dynamo env and no GPU, run by nextest exactly as `cargo xtask test --tier
# unit|integration` runs them (same profiles, .config/nextest.toml). The
# integration tier starts real nats-server and etcd processes: the pinned
# ones are on PATH, and they listen on the sandbox's own loopback.
#
# Each test check keeps the tier's JUnit report as its output
# (result/junit.xml).
#
# Imported by flake.nix with its arguments; uses builtins rather than lib so that
# nix/check-offline.sh can evaluate it against stub packages.
{
  runCommand,
  rustPlatform,
  rustToolchain,
  cargo-nextest,
  protobuf,
  services,
  pins,
  src,
  cargoLock,
  version,
}:
let
  common = {
    inherit src version cargoLock;
    nativeBuildInputs = [ rustToolchain protobuf ];
    PROTOC = "${protobuf}/bin/protoc";
    # Debug builds, like `cargo nextest run` outside Nix.
    dontCargoBuild = true;
    doCheck = false;
    dontCargoInstall = true;
  };

  tier = profile:
    rustPlatform.buildRustPackage (common // {
      pname = "testbed-${profile}";
      nativeBuildInputs = common.nativeBuildInputs ++ [ cargo-nextest services.nats-server services.etcd ];
      ${pins.nats-server.env} = "${services.nats-server}/bin/${pins.nats-server.binary}";
      ${pins.etcd.env} = "${services.etcd}/bin/${pins.etcd.binary}";
      buildPhase = ''
        runHook preBuild
        export HOME=$TMPDIR/home XDG_CACHE_HOME=$TMPDIR/cache
        export TESTBED_CACHE_DIR=$TMPDIR/testbed-cache TESTBED_STATE_DIR=$TMPDIR/testbed-state
        mkdir -p $HOME
        cargo nextest run --offline --profile ${profile}
        runHook postBuild
      '';
      installPhase = ''
        runHook preInstall
        mkdir -p $out
        cp target/nextest/${profile}/junit.xml $out/junit.xml
        runHook postInstall
      '';
    });
in
{
  fmt = runCommand "testbed-fmt" { nativeBuildInputs = [ rustToolchain ]; } ''
    export HOME=$TMPDIR
    cd ${src}
    cargo fmt --all --check
    touch $out
  '';

  clippy = rustPlatform.buildRustPackage (common // {
    pname = "testbed-clippy";
    buildPhase = ''
      runHook preBuild
      cargo clippy --offline --workspace --all-targets -- -D warnings
      runHook postBuild
    '';
    installPhase = "touch $out";
  });

  unit = tier "unit";
  integration = tier "integration";
}
