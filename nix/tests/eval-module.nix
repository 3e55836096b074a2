# Evaluates nix/module.nix with nix/example.nix's settings and a stub lib (no nixpkgs) and
# returns what the check compares: the unit's commands and credentials, and the config and
# policy it would render, as TOML.
let
  stub = import ./stub-lib.nix;
  pv = import ../lib.nix;
  example = (import ../example.nix { }).services.pvegate;
  cfg = stub.defaults // example // { policy = stub.defaults.policy // example.policy; };
  module = import ../module.nix {
    config.services.pvegate = cfg;
    inherit (stub) lib pkgs;
  };
  unit = module.config.systemd.services.pvegate;
  configFile = builtins.head unit.restartTriggers;
  policyFile = builtins.head configFile.value.policy.files;
in
{
  execStart = unit.serviceConfig.ExecStart;
  execStartPre = unit.serviceConfig.ExecStartPre;
  loadCredential = unit.serviceConfig.LoadCredential;
  dynamicUser = unit.serviceConfig.DynamicUser;
  protectSystem = unit.serviceConfig.ProtectSystem;
  assertions = map (a: a.assertion) module.config.assertions;
  configToml = pv.toTOML configFile.value;
  policyFiles = configFile.value.policy.files;
  # The module renders the policy with pkgs.formats.toml; here the same set with toTOML.
  policyToml = pv.toTOML (pv.mkPolicy { inherit (cfg.policy) settings guests ranges; });
}
