# Offline stand-in for the nixpkgs flake input (see default.nix).
{
  outputs = { self }: {
    lib = { };
    legacyPackages.x86_64-linux = import ./. { };
  };
}
