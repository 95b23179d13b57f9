# Offline stand-in for oxalica/rust-overlay: `rust-bin.stable.latest.default`
# with `.override { extensions; }`, as the flake uses it.
{
  outputs = { self }: {
    overlays.default = final: prev:
      let toolchain = extensions: final.stdenv.mkDerivation {
        pname = "rust-toolchain";
        version = "1.90.0";
        inherit extensions;
      };
      in {
        rust-bin.stable.latest.default = toolchain [ ] // {
          override = { extensions ? [ ], targets ? [ ] }: toolchain extensions;
        };
      };
  };
}
