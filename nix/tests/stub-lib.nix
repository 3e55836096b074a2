# Just enough of nixpkgs' `lib` (and `pkgs`) to evaluate nix/module.nix without nixpkgs, for
# tools/check-nix.sh. Options evaluate to their declarations; `mkIf` is a plain `if`;
# `pkgs.formats.toml` returns its input (rendered by nix/lib.nix's toTOML in the check).
rec {
  lib = rec {
    mkOption = o: o;
    mkEnableOption = d: { default = false; description = d; };
    literalExpression = t: t;
    types =
      let t = name: { inherit name; };
      in {
        package = t "package"; str = t "str"; bool = t "bool"; anything = t "anything";
        listOf = _: t "listOf"; attrsOf = _: t "attrsOf"; nullOr = _: t "nullOr";
      };
    mkIf = cond: v: if cond then v else { };
    mkDefault = v: v;
    filterAttrs = pred: set: builtins.listToAttrs (builtins.concatMap
      (n: if pred n set.${n} then [{ name = n; value = set.${n}; }] else [ ])
      (builtins.attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (builtins.attrNames set);
    optional = c: v: if c then [ v ] else [ ];
    optionalAttrs = c: v: if c then v else { };
    recursiveUpdate = lhs: rhs: lhs // builtins.mapAttrs
      (n: v: if builtins.isAttrs v && lhs ? ${n} && builtins.isAttrs lhs.${n}
        then recursiveUpdate lhs.${n} v else v)
      rhs;
    getExe = p: "${p}/bin/pvegate";
  };
  pkgs = {
    coreutils = "/nix/store/stub-coreutils";
    formats.toml = _: {
      type = { name = "toml"; };
      generate = name: value: { inherit name value; __toString = self: "/nix/store/stub-${name}"; };
    };
  };
  # The option defaults, so that a test config may set only what it needs.
  defaults = {
    enable = false;
    package = "/nix/store/stub-pvegate";
    settings = { };
    policy = { settings = { }; guests = [ ]; ranges = [ ]; files = [ ]; };
    tlsCertFile = null;
    tlsKeyFile = null;
    upstreamCaFile = null;
    credentials = { };
  };
}
