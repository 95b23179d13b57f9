# Offline stand-in for ipetkov/crane, for nix/check-offline.sh only: these
# machines cannot download crane (or nixpkgs). `mkLib pkgs` gives the part
# of crane's library the flake uses, with crane's argument names and
# defaults, each returning a real (never built) derivation of the stand-in
# nixpkgs, so that evaluating the flake instantiates every crane output:
#
#   overrideToolchain (a toolchain, or a function of pkgs giving one),
#   crateNameFromCargoToml, vendorCargoDeps (one fetchurl per registry crate
#   of Cargo.lock, with its checksum, as crane does: a lock entry without a
#   checksum fails here), mkCargoDerivation, buildDepsOnly, buildPackage,
#   cargoClippy, cargoFmt, cargoNextest.
#
# The commands crane would run are kept on each derivation (buildPhase,
# checkPhase, installPhase) so nix/offline-stubs/eval.nix can check them;
# the hooks that would run them are not modelled. Like crane, every
# derivation takes the toolchain given to overrideToolchain; without one the
# stand-in refuses (the flake always pins the toolchain).
{
  outputs = { self }: {
    mkLib = pkgs:
      let
        inherit (builtins)
          filter fromTOML isFunction pathExists readFile removeAttrs;

        mkLibWith = toolchain: rec {
          overrideToolchain = t: mkLibWith (if isFunction t then t pkgs else t);

          crateNameFromCargoToml = args:
            let
              src = args.src or (throw "crane stub: crateNameFromCargoToml needs src (or pname and version)");
              toml = fromTOML (readFile (args.cargoToml or (src + "/Cargo.toml")));
            in
            {
              pname = args.pname or toml.package.name or toml.workspace.package.name or "cargo-package";
              version = args.version or toml.package.version or toml.workspace.package.version or "0.0.1";
            };

          vendorCargoDeps = args:
            let
              src = args.src or (throw "crane stub: vendorCargoDeps needs src");
              lockFile = src + "/Cargo.lock";
              lock =
                if pathExists lockFile then fromTOML (readFile lockFile)
                else throw "crane stub: no Cargo.lock at the root of ${toString src}";
              registry = filter (p: p ? source) lock.package;
              crate = p:
                if p.source != "registry+https://github.com/rust-lang/crates.io-index" then
                  throw "crane stub: ${p.name} ${p.version} comes from ${p.source}; only crates.io is modelled"
                else pkgs.fetchurl {
                  url = "https://static.crates.io/crates/${p.name}/${p.name}-${p.version}.crate";
                  name = "cargo-src-${p.name}-${p.version}";
                  sha256 = p.checksum or (throw "crane stub: Cargo.lock has no checksum for ${p.name} ${p.version}");
                };
            in
            pkgs.stdenv.mkDerivation {
              pname = "vendor-cargo-deps";
              version = "0";
              crates = map crate registry;
            };

          mkCargoDerivation =
            args@{ cargoArtifacts, buildPhaseCargoCommand, checkPhaseCargoCommand ? "", installPhaseCommand ? "mkdir -p $out", ... }:
            let
              name = crateNameFromCargoToml args;
              cleaned = removeAttrs args [
                "buildPhaseCargoCommand" "checkPhaseCargoCommand" "installPhaseCommand" "pnameSuffix"
                "cargoLock" "outputHashes" "stdenv"
              ];
            in
            if toolchain == null then throw "crane stub: no toolchain (call overrideToolchain, as the flake does)"
            else pkgs.stdenv.mkDerivation (cleaned // {
              pname = "${name.pname}${args.pnameSuffix or ""}";
              inherit (name) version;
              inherit cargoArtifacts;
              doInstallCargoArtifacts = args.doInstallCargoArtifacts or true;
              cargoVendorDir = if args ? cargoVendorDir then args.cargoVendorDir else vendorCargoDeps args;
              nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [ toolchain ];
              buildPhase = args.buildPhase or buildPhaseCargoCommand;
              checkPhase = args.checkPhase or checkPhaseCargoCommand;
              installPhase = args.installPhase or installPhaseCommand;
            });

          buildDepsOnly = args:
            let
              cargoExtraArgs = args.cargoExtraArgs or "--locked";
              doCheck = args.doCheck or true;
            in
            mkCargoDerivation ((removeAttrs args [ "cargoExtraArgs" "cargoCheckExtraArgs" "cargoTestExtraArgs" "cargoBuildExtraArgs" ]) // {
              inherit doCheck;
              pnameSuffix = "-deps";
              cargoArtifacts = null;
              buildPhaseCargoCommand = args.buildPhaseCargoCommand or ''
                cargoWithProfile check ${cargoExtraArgs} ${args.cargoCheckExtraArgs or (if doCheck then "--all-targets" else "")}
                cargoWithProfile build ${cargoExtraArgs} ${args.cargoBuildExtraArgs or ""}
              '';
              checkPhaseCargoCommand = "cargoWithProfile test ${cargoExtraArgs} ${args.cargoTestExtraArgs or "--no-run"}";
              doInstallCargoArtifacts = true;
            });

          buildPackage = args:
            let cargoExtraArgs = args.cargoExtraArgs or "--locked"; in
            mkCargoDerivation ((removeAttrs args [ "cargoExtraArgs" "cargoBuildExtraArgs" "cargoTestExtraArgs" ]) // {
              doCheck = args.doCheck or true;
              doInstallCargoArtifacts = args.doInstallCargoArtifacts or false;
              cargoArtifacts = args.cargoArtifacts or (buildDepsOnly args);
              buildPhaseCargoCommand = args.buildPhaseCargoCommand or
                "cargoWithProfile build --message-format json-render-diagnostics ${cargoExtraArgs} ${args.cargoBuildExtraArgs or ""}";
              checkPhaseCargoCommand = args.checkPhaseCargoCommand or
                "cargoWithProfile test ${cargoExtraArgs} ${args.cargoTestExtraArgs or ""}";
              installPhaseCommand = args.installPhaseCommand or "install the binaries named by the build log";
            });

          cargoClippy = args@{ cargoArtifacts, ... }:
            mkCargoDerivation ((removeAttrs args [ "cargoClippyExtraArgs" "cargoExtraArgs" ]) // {
              pnameSuffix = "-clippy";
              buildPhaseCargoCommand =
                "cargoWithProfile clippy ${args.cargoExtraArgs or "--locked"} ${args.cargoClippyExtraArgs or "--all-targets"}";
            });

          cargoFmt = args:
            mkCargoDerivation ((removeAttrs args [ "cargoExtraArgs" "rustFmtExtraArgs" ]) // {
              cargoArtifacts = null;
              cargoVendorDir = null;
              pnameSuffix = "-fmt";
              buildPhaseCargoCommand = "cargo fmt ${args.cargoExtraArgs or ""} -- --check ${args.rustFmtExtraArgs or ""}";
            });

          cargoNextest = args@{ cargoArtifacts, ... }:
            mkCargoDerivation ((removeAttrs args [ "cargoExtraArgs" "cargoNextestExtraArgs" "partitions" "withLlvmCov" ]) // {
              pnameSuffix = "-nextest";
              doCheck = args.doCheck or true;
              buildPhaseCargoCommand = args.buildPhaseCargoCommand or "mkdir -p $out; cargo nextest --version";
              checkPhaseCargoCommand =
                "cargo nextest run \${CARGO_PROFILE:+--cargo-profile $CARGO_PROFILE} ${args.cargoExtraArgs or ""} ${args.cargoNextestExtraArgs or ""}";
              nativeBuildInputs = (args.nativeBuildInputs or [ ]) ++ [ pkgs.cargo-nextest ];
            });
        };
      in
      mkLibWith null;
  };
}
