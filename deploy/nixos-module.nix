# NixOS module for pvegate. Import it and set, for example:
#   services.pvegate = { enable = true; package = pkgs.callPackage ./pvegate.nix {}; configFile = /etc/pvegate/pvegate.toml; };
{ config, lib, ... }:
let
  cfg = config.services.pvegate;
in
{
  options.services.pvegate = {
    enable = lib.mkEnableOption "pvegate, a policy-enforcing proxy for the Proxmox VE API";
    package = lib.mkOption {
      type = lib.types.package;
      description = "The pvegate package (build it from this repository with rustPlatform.buildRustPackage).";
    };
    configFile = lib.mkOption {
      type = lib.types.path;
      default = "/etc/pvegate/pvegate.toml";
      description = "pvegate config file (see deploy/pvegate.example.toml).";
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.pvegate = {
      description = "pvegate - policy-enforcing proxy for the Proxmox VE API";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStartPre = "${cfg.package}/bin/pvegate validate --config ${cfg.configFile}";
        ExecStart = "${cfg.package}/bin/pvegate serve --config ${cfg.configFile}";
        ExecReload = "/run/current-system/sw/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        DynamicUser = true;
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        LimitNOFILE = 65536;
      };
    };
  };
}
