# Reads a PEP 751 lock (pylock.*.toml, as `uv pip compile --format
# pylock.toml` writes it) and picks, for every package, the one wheel that an
# x86_64 manylinux CPython of the pinned MAJOR.MINOR can install.
#
# Pure: builtins only, no nixpkgs, so nix/check-offline.sh can evaluate it on
# a machine that cannot reach nixpkgs.
#
# With `requirementsText` (the hash-locked requirements file that the non-Nix
# path installs with `uv pip install --require-hashes --no-deps`), it also
# proves that both files describe the same environment: the same package set,
# the same versions, and every wheel Nix fetches has a hash that the
# requirements file accepts. Evaluation fails otherwise, so the two locks
# cannot drift apart silently.
{
  # Contents of the pylock file.
  pylockText,
  # Contents of the requirements lock, or null to skip the cross-check.
  requirementsText ? null,
  # "3.11": the interpreter the wheels are for.
  pythonVersion,
  # Newest glibc the wheels may require: the lock was compiled for
  # x86_64-manylinux_2_28.
  maxGlibcMinor ? 28,
}:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    elem
    elemAt
    filter
    foldl'
    fromJSON
    fromTOML
    head
    isString
    length
    listToAttrs
    map
    match
    replaceStrings
    sort
    split
    substring
    stringLength
    ;

  any = pred: list: foldl' (acc: x: acc || pred x) false list;
  all = pred: list: foldl' (acc: x: acc && pred x) true list;
  splitOn = sep: s: filter isString (split sep s);

  # builtins.fromTOML rejects TOML date-times ("Dates and times are not
  # supported" unless the experimental parse-toml-timestamps feature is on),
  # and uv writes `upload-time = 2025-01-01T00:00:00Z` into every wheel entry.
  # The field is informational, so it is dropped before parsing; the file
  # itself stays exactly as uv wrote it.
  withoutTimestamps = concatStringsSep "" (
    filter isString (split "upload-time = [0-9][0-9:.TZ+-]*, " pylockText)
  );
  lock = fromTOML withoutTimestamps;

  pyParts = splitOn "\\." pythonVersion;
  pyMajor = fromJSON (elemAt pyParts 0);
  pyMinor = fromJSON (elemAt pyParts 1);
  cpTag = "cp${toString pyMajor}${toString pyMinor}";

  # PEP 503 name normalisation (builtins have no toLower).
  toLower = replaceStrings
    [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ]
    [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  normalize = name: toLower (replaceStrings [ "_" "." ] [ "-" "-" ] name);

  basename = url: let parts = splitOn "/" url; in elemAt parts (length parts - 1);

  # {name}-{ver}(-{build})?-{python}-{abi}-{platform}.whl; each tag may be a
  # dot-separated set.
  parseWheel = filename:
    let
      stem = substring 0 (stringLength filename - 4) filename;
      parts = splitOn "-" stem;
      n = length parts;
    in
    if match ".*\\.whl" filename == null || n < 5 then
      throw "pylock: ${filename} is not a wheel file name"
    else {
      python = splitOn "\\." (elemAt parts (n - 3));
      abi = splitOn "\\." (elemAt parts (n - 2));
      platform = splitOn "\\." (elemAt parts (n - 1));
    };

  # cpXY with X.Y <= the target: what an abi3 wheel's python tag may say.
  cpAtMost = tag:
    let m = match "cp([0-9])([0-9]+)" tag;
    in m != null && fromJSON (elemAt m 0) == pyMajor && fromJSON (elemAt m 1) <= pyMinor;

  # pyXY with X.Y <= the target: pure wheels built for an older Python 3
  # (pip accepts py37 on 3.11).
  pyAtMost = tag:
    let m = match "py([0-9])([0-9]+)" tag;
    in m != null && fromJSON (elemAt m 0) == pyMajor && fromJSON (elemAt m 1) <= pyMinor;

  pythonOk = tags: any (t: elem t [ cpTag "py${toString pyMajor}" ] || cpAtMost t || pyAtMost t) tags;

  glibcMinorOf = tag:
    if tag == "manylinux1_x86_64" then 5
    else if tag == "manylinux2010_x86_64" then 12
    else if tag == "manylinux2014_x86_64" then 17
    else
      let m = match "manylinux_2_([0-9]+)_x86_64" tag;
      in if m == null then null else fromJSON (head m);

  platformOk = tags: any (t: t == "any" || (let g = glibcMinorOf t; in g != null && g <= maxGlibcMinor)) tags;

  # Higher is better: a build for exactly this CPython, then the stable ABI,
  # then pure Python (some packages ship a slow pure fallback beside their
  # compiled wheels).
  score = tags:
    if elem cpTag tags.abi then 3
    else if elem "abi3" tags.abi then 2
    else if elem "none" tags.abi then 1
    else 0;

  compatible = tags:
    score tags > 0 && pythonOk tags.python && platformOk tags.platform
    # an abi3 or none wheel still names its CPython; cp311-cp311 must match exactly
    && (!(elem cpTag tags.abi) || elem cpTag tags.python);

  pickWheel = pkg:
    let
      candidates = map (w: rec {
        inherit (w) url;
        filename = basename w.url;
        sha256 = w.hashes.sha256 or (throw "pylock: ${filename} has no sha256 hash");
        tags = parseWheel filename;
        rank = score tags;
      }) (pkg.wheels or [ ]);
      usable = sort (a: b: a.rank > b.rank) (filter (c: compatible c.tags) candidates);
    in
    if usable == [ ] then
      throw ("pylock: no wheel of ${pkg.name} ${pkg.version} fits CPython ${pythonVersion} "
        + "on x86_64 manylinux_2_${toString maxGlibcMinor} (offered: "
        + concatStringsSep ", " (map (c: c.filename) candidates) + "); "
        + "regenerate the lock as nix/python/README.md says")
    else
      let w = head usable; in {
        name = normalize pkg.name;
        inherit (pkg) version;
        inherit (w) url filename sha256;
      };

  wheels = map pickWheel lock.packages;

  # --- the cross-check against the requirements lock -------------------------

  # name -> { version; hashes = [ ... ]; } from `name==version \` lines
  # followed by `--hash=sha256:...` lines.
  requirements =
    let
      lines = splitOn "\n" requirementsText;
      step = acc: line:
        let
          pin = match "([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\\\]+).*" line;
          hash = match " *--hash=sha256:([0-9a-f]{64}).*" line;
        in
        if pin != null then
          acc // {
            current = normalize (elemAt pin 0);
            pkgs = acc.pkgs // { ${normalize (elemAt pin 0)} = { version = elemAt pin 1; hashes = [ ]; }; };
          }
        else if hash != null && acc.current != null then
          acc // {
            pkgs = acc.pkgs // {
              ${acc.current} = acc.pkgs.${acc.current} // { hashes = acc.pkgs.${acc.current}.hashes ++ [ (head hash) ]; };
            };
          }
        else acc;
    in
    (foldl' step { current = null; pkgs = { }; } lines).pkgs;

  byName = listToAttrs (map (w: { inherit (w) name; value = w; }) wheels);

  problems =
    if requirementsText == null then [ ]
    else
      map (n: "${n} is in the requirements lock but not in the pylock") (filter (n: !(byName ? ${n})) (attrNames requirements))
      ++ map (w: "${w.name} is in the pylock but not in the requirements lock") (filter (w: !(requirements ? ${w.name})) wheels)
      ++ map (w: "${w.name}: pylock has ${w.version}, requirements lock has ${requirements.${w.name}.version}")
        (filter (w: requirements ? ${w.name} && requirements.${w.name}.version != w.version) wheels)
      ++ map (w: "${w.name}: the hash of ${w.filename} is not among the requirements lock's hashes")
        (filter (w: requirements ? ${w.name} && !(elem w.sha256 requirements.${w.name}.hashes)) wheels);

  checked =
    if problems == [ ] then wheels
    else throw ("the pylock and the requirements lock disagree (regenerate both, see nix/python/README.md):\n  "
      + concatStringsSep "\n  " problems);
in
{
  lockVersion = lock.lock-version;
  requiresPython = lock.requires-python or null;
  # [ { name; version; url; filename; sha256; } ], one per package, in lock order.
  wheels = checked;
  inherit problems;
  agrees = requirementsText != null && problems == [ ] && all (w: w.sha256 != "") checked;
}
