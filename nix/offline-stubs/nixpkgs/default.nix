# A stand-in for nixpkgs, for nix/check-offline.sh only: these machines
# cannot download nixpkgs. It provides just the attributes the flake's
# modules use, with the same calling conventions, and turns every package
# into a real (never built) derivation, so that evaluating the flake against
# it instantiates every output's .drv: missing arguments, misspelt
# attributes, values a derivation cannot carry, malformed hashes and store
# names all fail here as they would against nixpkgs. Versions are made up
# (the pinned tools come from their wheels, never from here).
{ system ? "x86_64-linux", overlays ? [ ], config ? { } }:
let
  inherit (builtins) derivation foldl' functionArgs intersectAttrs isFunction removeAttrs;

  mkDrv = attrs:
    let
      name = attrs.name or "${attrs.pname}-${attrs.version}";
      # What real stdenv keeps out of the derivation's environment.
      env = removeAttrs attrs [ "passthru" "meta" "cargoLock" ];
      drv = derivation (env // {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo offline stub: not buildable; exit 1" ];
      });
    in
    drv // (attrs.passthru or { }) // { meta = attrs.meta or { }; };

  pkg = pname: version: mkDrv { inherit pname version; };

  fetchurl = { url ? null, urls ? [ url ], sha256 ? null, hash ? null, name ? baseNameOf (builtins.head urls) }:
    assert (url != null || urls != [ null ]) || throw "fetchurl: no url";
    assert (sha256 != null || hash != null) || throw "fetchurl ${name}: no hash";
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [ "-c" "exit 1" ];
      urls = urls;
      outputHashMode = "flat";
      outputHashAlgo = "sha256";
      outputHash = if sha256 != null then sha256 else hash;
    };

  base = final: {
    inherit system config fetchurl;
    lib = { };

    callPackage = fn: args:
      let f = if isFunction fn then fn else import fn;
      in f (intersectAttrs (functionArgs f) final // args);

    stdenv = {
      mkDerivation = mkDrv;
      cc.cc.lib = pkg "gcc-lib" "14.2.0";
    };
    mkShell = attrs:
      mkDrv ((removeAttrs attrs [ "packages" "inputsFrom" ]) // {
        name = attrs.name or "nix-shell";
        nativeBuildInputs = (attrs.nativeBuildInputs or [ ]) ++ (attrs.packages or [ ]);
      });
    runCommand = name: env: script: mkDrv (env // { inherit name; buildCommand = script; });

    autoPatchelfHook = pkg "auto-patchelf-hook" "0";
    makeWrapper = pkg "make-shell-wrapper-hook" "0";
    unzip = pkg "unzip" "6.0";
    zlib = pkg "zlib" "1.3.1";
    git = pkg "git" "2.51.0";
    cargo-nextest = pkg "cargo-nextest" "0.9.110";
    nixfmt = pkg "nixfmt" "1.0.0";

    python311 =
      let drv = pkg "python3" "3.11.14";
      in drv // {
        pythonVersion = "3.11";
        interpreter = "${drv}/bin/python3.11";
        sitePackages = "lib/python3.11/site-packages";
        pkgs.pip = pkg "python3.11-pip" "25.2";
      };

    cudaPackages =
      if config.allowUnfree or false then {
        cudatoolkit = pkg "cudatoolkit" "12.9";
        cuda_nvml_dev = pkg "cuda_nvml_dev" "12.9";
      } else throw "cudaPackages are unfree: this nixpkgs instance was imported without allowUnfree";
  };

  fix = f: let x = f x; in x;
in
fix (final: foldl' (acc: overlay: acc // overlay final acc) (base final) overlays)
