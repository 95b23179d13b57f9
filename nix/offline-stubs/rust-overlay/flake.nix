# Offline stand-in for oxalica/rust-overlay: `rust-bin.fromRustupToolchainFile`
# (what the flake uses) reads the file as rust-overlay does, taking
# [toolchain] channel, components and profile, and gives a toolchain
# derivation named by the channel; `rust-bin.stable.latest.default` with
# `.override { extensions; }` remains for comparison.
{
  outputs = { self }: {
    overlays.default = final: prev:
      let
        toolchain = { version, extensions ? [ ], profile ? "default" }:
          final.stdenv.mkDerivation {
            pname = "rust-toolchain";
            inherit version extensions profile;
          };
        fromRustupToolchain = { channel, components ? [ ], profile ? "default", targets ? [ ], ... }:
          assert builtins.match "[0-9]+\\.[0-9]+\\.[0-9]+|stable|beta|nightly(-.*)?" channel != null
            || throw "rust-overlay stub: unknown channel ${channel}";
          toolchain { version = channel; extensions = components; inherit profile; };
      in
      {
        rust-bin = {
          inherit fromRustupToolchain;
          fromRustupToolchainFile = file:
            let toml = builtins.fromTOML (builtins.readFile file);
            in fromRustupToolchain (toml.toolchain or (throw "rust-overlay stub: ${toString file} has no [toolchain]"));
          stable.latest.default = toolchain { version = "1.90.0"; } // {
            override = { extensions ? [ ], targets ? [ ] }: toolchain { version = "1.90.0"; inherit extensions; };
          };
        };
      };
  };
}
