# Pure helpers for pvegate policies in Nix. They use only builtins — no nixpkgs — so
# `nix-instantiate --eval` can check them anywhere (tools/check-nix.sh does).
#
#   let pv = import ./nix/lib.nix; in
#   pv.mkPolicy {
#     settings = { hint = "ask @ops in #infra"; };
#     guests = pv.guestsFromDefinitions {
#       imported.doc1 = { vmid = 104; readonly = true; reason = "Main services VM"; };
#       managed.tofu-web = { vmid = 110; };
#     };
#     ranges = [ { vmids = "9000-9099"; name = "templates"; access = "managed"; deny = [ "destroy" ]; } ];
#   }
let
  inherit (builtins)
    attrNames concatStringsSep filter isAttrs isBool isFloat isInt isList isString length map toJSON;

  optionalAttr = cond: attrs: if cond then attrs else { };

  # One `[[guest]]` entry from a definition; keys pvegate does not know are dropped here so
  # that a definitions set may carry other data (disk sizes, IPs…) for other modules.
  fromDefinition = access: name: d:
    { vmid = d.vmid; inherit name access; }
    // optionalAttr (d ? reason) { inherit (d) reason; }
    // optionalAttr (d ? hint) { inherit (d) hint; }
    // optionalAttr (d ? allow) { inherit (d) allow; }
    // optionalAttr (d ? deny) { inherit (d) deny; }
    // optionalAttr (d ? exempt) { inherit (d) exempt; };

  # TOML values pvegate's files use: strings, integers, booleans, lists of those.
  value = v:
    if isString v then toJSON v # JSON string escapes are valid TOML basic-string escapes
    else if isBool v then (if v then "true" else "false")
    else if isInt v then toString v
    else if isFloat v then toJSON v
    else if isList v then "[" + concatStringsSep ", " (map value v) + "]"
    else throw "pvegate: cannot write ${toJSON v} as a TOML value";

  keyValues = attrs:
    concatStringsSep "" (map (k: "${k} = ${value attrs.${k}}\n")
      (filter (k: !(isAttrs attrs.${k}) && attrs.${k} != null) (attrNames attrs)));

  isTableList = v: isList v && v != [ ] && isAttrs (builtins.head v);
in
rec {
  /* Guests from a definitions-style set:
       imported.<name> = { vmid = 104; readonly = true; };  # readonly: reads only
       imported.<name> = { vmid = 105; };                   # imported, not protected: managed
       managed.<name>  = { vmid = 110; };                   # managed (listed, e.g. for default_access = "readonly")
     Optional per guest: reason, hint, allow, deny, exempt. */
  guestsFromDefinitions = { imported ? { }, managed ? { } }:
    map (n: fromDefinition (if imported.${n}.readonly or false then "readonly" else "managed") n imported.${n})
      (attrNames imported)
    ++ map (n: fromDefinition "managed" n managed.${n}) (attrNames managed);

  /* The VMIDs a definitions set makes readonly (for assertions and dashboards). */
  readonlyVmids = defs: map (g: g.vmid) (filter (g: g.access == "readonly") (guestsFromDefinitions defs));

  /* A policy file as an attribute set: `[settings]` and the `[[guest]]` list. */
  mkPolicy = { settings ? { }, guests ? [ ], ranges ? [ ] }:
    optionalAttr (settings != { }) { inherit settings; } // { guest = guests ++ ranges; };

  /* Renders a pvegate config or policy attribute set as TOML: top-level scalars, `[table]`s of
     scalars and lists, and `[[array]]`s of such tables. The NixOS module renders with
     nixpkgs' `pkgs.formats.toml`; this one needs no nixpkgs, for checks. */
  toTOML = attrs:
    let
      names = attrNames attrs;
      tables = filter (k: isAttrs attrs.${k}) names;
      arrays = filter (k: isTableList attrs.${k}) names;
      scalars = filter (k: !(isAttrs attrs.${k}) && !(isTableList attrs.${k}) && attrs.${k} != [ ]) names;
    in
    keyValues (builtins.listToAttrs (map (k: { name = k; value = attrs.${k}; }) scalars))
    + concatStringsSep "" (map (k: "\n[${k}]\n" + keyValues attrs.${k}) tables)
    + concatStringsSep "" (map (k: concatStringsSep "" (map (t: "\n[[${k}]]\n" + keyValues t) attrs.${k})) arrays);

  /* How many rules a policy set has (used by the checks). */
  ruleCount = policy: length (policy.guest or [ ]);
}
