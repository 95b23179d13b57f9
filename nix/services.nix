# The programs the testbed runs, at the versions nix/pins.toml names:
# nats-server, etcd (+ etcdctl) and uv.
#
# nats-server and etcd: nixpkgs' own package when its version is the pinned
# one; otherwise the very Debian binary package that the non-Nix path installs
# (pins.toml's `debian-packages`), unpacked and patched for the Nix glibc. A
# note says so at evaluation time; a pin with neither source is an error that
# says what to add. uv: the pinned release's manylinux wheel from PyPI.
#
# Called with pkgs.callPackage; uses builtins rather than lib so that
# nix/check-offline.sh can evaluate it against stub packages.
{
  stdenv,
  fetchurl,
  dpkg,
  unzip,
  autoPatchelfHook,
  nats-server,
  etcd,
  pins,
}:
let
  inherit (builtins) attrNames concatStringsSep hasAttr map trace;

  # Debian bookworm (12) amd64 packages. sha256 and sha1 are those of
  # `apt-cache show` / `apt-get download` (the sha1 names the file on
  # snapshot.debian.org, which keeps it after the pool drops it).
  debian = {
    nats-server."2.9.10" = [
      {
        pool = "pool/main/n/nats-server/nats-server_2.9.10-1+b3_amd64.deb";
        sha256 = "9f69ebb6f612e652382fde175622160dcd81fd97f2356f5da80bb5c3f48513dd";
        sha1 = "754568cfd871a3b09d28804d5a9a6b6e1f22213e";
      }
    ];
    etcd."3.4.23" = [
      {
        pool = "pool/main/e/etcd/etcd-server_3.4.23-4+b4_amd64.deb";
        sha256 = "3a9445d4560ad6de1c375756b2a17d97713df44cbd20a658c871fe108af7ef5d";
        sha1 = "0f177eb1e12689059bfc85d4907dddf117a10cd4";
      }
      {
        pool = "pool/main/e/etcd/etcd-client_3.4.23-4+b4_amd64.deb";
        sha256 = "db3a484d5d924b50bf71f459ee544ecd7b11c25dc2f6becc0c50352d67299cc8";
        sha1 = "c6a71307cbdc4c450aec0d04dd8b3dd11f58c4dd";
      }
    ];
  };

  # PyPI wheels of uv (URL and hash as `uv pip compile --format pylock.toml`
  # reports them for uv==<version>).
  uvWheels."0.13.9" = {
    url = "https://files.pythonhosted.org/packages/3d/aa/26d64642d808de4a652579ef950d7cd2d37f080a8babf9c67c6b75fc4c3f/uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl";
    sha256 = "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19";
  };

  baseName = path: let parts = builtins.filter builtins.isString (builtins.split "/" path);
    in builtins.elemAt parts (builtins.length parts - 1);

  fromDebian = { key, pin, binaries, versionCheck }:
    stdenv.mkDerivation {
      pname = pin.binary;
      inherit (pin) version;
      srcs = map (d: fetchurl {
        urls = [
          "https://deb.debian.org/debian/${d.pool}"
          "https://snapshot.debian.org/file/${d.sha1}"
        ];
        name = baseName d.pool;
        inherit (d) sha256;
      }) debian.${key}.${pin.version};
      nativeBuildInputs = [ dpkg autoPatchelfHook ];
      unpackPhase = ''
        runHook preUnpack
        for deb in $srcs; do dpkg-deb -x "$deb" root; done
        runHook postUnpack
      '';
      dontConfigure = true;
      dontBuild = true;
      installPhase = ''
        runHook preInstall
        ${concatStringsSep "\n" (map (b: "install -Dm755 root/${b} $out/bin/${baseName b}") binaries)}
        runHook postInstall
      '';
      doInstallCheck = true;
      installCheckPhase = ''
        runHook preInstallCheck
        ${concatStringsSep "\n" versionCheck}
        runHook postInstallCheck
      '';
      passthru.pinSource = "debian";
    };

  # The nixpkgs package when it is the pinned version, else the Debian one.
  choose = { key, nixpkgsPackage, binaries, versionCheck }:
    let
      pin = pins.${key};
      have = nixpkgsPackage.version or "unknown";
    in
    if have == pin.version then nixpkgsPackage
    else if hasAttr key debian && hasAttr pin.version debian.${key} then
      trace "note: nixpkgs has ${key} ${have}, nix/pins.toml pins ${pin.version}: using Debian's ${concatStringsSep " + " pin.debian-packages} ${pin.version}"
        (fromDebian { inherit key pin binaries versionCheck; })
    else throw ("nix/pins.toml pins ${key} ${pin.version}, but nixpkgs has ${have} and nix/services.nix "
      + "knows Debian packages only for ${concatStringsSep ", " (attrNames (debian.${key} or { }))}: "
      + "add the ${concatStringsSep " + " pin.debian-packages} .deb(s) of ${pin.version} there");

  natsServer = choose {
    key = "nats-server";
    nixpkgsPackage = nats-server;
    binaries = [ "usr/sbin/nats-server" ];
    versionCheck = [ ''$out/bin/nats-server --version | grep -F "v${pins.nats-server.version}"'' ];
  };

  etcdPinned = choose {
    key = "etcd";
    nixpkgsPackage = etcd;
    binaries = [ "usr/bin/etcd" "usr/bin/etcdctl" ];
    versionCheck = [
      ''$out/bin/etcd --version | grep -F "etcd Version: ${pins.etcd.version}"''
      ''$out/bin/etcdctl version | grep -F "etcdctl version: ${pins.etcd.version}"''
    ];
  };

  uv =
    let
      wheel = uvWheels.${pins.uv.version} or (throw
        "nix/pins.toml pins uv ${pins.uv.version}; add its manylinux x86_64 wheel (URL + sha256) to uvWheels in nix/services.nix");
    in
    stdenv.mkDerivation {
      pname = "uv";
      inherit (pins.uv) version;
      src = fetchurl { inherit (wheel) url sha256; name = baseName wheel.url; };
      nativeBuildInputs = [ unzip autoPatchelfHook ];
      buildInputs = [ stdenv.cc.cc.lib ]; # libgcc_s
      unpackPhase = "unzip -q $src";
      dontConfigure = true;
      dontBuild = true;
      installPhase = ''
        runHook preInstall
        install -Dm755 uv-${pins.uv.version}.data/scripts/uv $out/bin/uv
        install -Dm755 uv-${pins.uv.version}.data/scripts/uvx $out/bin/uvx
        runHook postInstall
      '';
      doInstallCheck = true;
      installCheckPhase = ''$out/bin/uv --version | grep -F "uv ${pins.uv.version}"'';
    };
in
{
  nats-server = natsServer;
  etcd = etcdPinned;
  inherit uv;
}
