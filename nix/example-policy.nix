# The example policy of nix/example.nix as a plain attribute set (no nixpkgs), so that
# tools/check-nix.sh can render it and have `pvegate validate` judge the result.
let
  pv = import ./lib.nix;

  # Definitions as a homelab flake might keep them: what was imported into OpenTofu (and must
  # not be touched by it) and what it manages.
  definitions = {
    imported.doc1 = { vmid = 104; readonly = true; reason = "Main services VM"; };
    imported.igp = { vmid = 109; readonly = true; allow = [ "snapshot.*" "backup" ]; };
    imported.old-wiki = { vmid = 105; }; # imported, but OpenTofu may change it
    managed.tofu-web = { vmid = 110; };
    managed.scratch-ct = { vmid = 120; };
  };
in
{
  inherit definitions;
  policy = pv.mkPolicy {
    settings = {
      hint = "ask @ops in #infra";
      exempt = [ "root@pam" ];
      deny_actions = [ "node.execute" ];
    };
    guests = pv.guestsFromDefinitions definitions;
    ranges = [
      { vmids = "9000-9099"; name = "templates"; access = "managed"; deny = [ "destroy" ]; }
    ];
  };
}
