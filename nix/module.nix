# NixOS module for pvegate. The flake's `nixosModules.default` imports it and sets `package`.
#
# services.pvegate.settings is the config file as Nix (rendered to TOML); services.pvegate.policy
# is the policy as Nix (settings, guests, ranges). Keys and certificates reach the service as
# systemd credentials: systemd (as root) reads the files, the service's dynamic user reads its
# private copies under $CREDENTIALS_DIRECTORY, so a 0600 root-owned key never needs a chmod.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.pvegate;
  toml = pkgs.formats.toml { };
  pv = import ./lib.nix;
  credDir = "/run/credentials/pvegate.service";

  policyAttrs = pv.mkPolicy { inherit (cfg.policy) settings guests ranges; };
  hasInlinePolicy = cfg.policy.settings != { } || cfg.policy.guests != [ ] || cfg.policy.ranges != [ ];
  policyFile = toml.generate "pvegate-policy.toml" policyAttrs;

  # Credentials from the convenience options, plus whatever `credentials` lists.
  namedFiles = lib.filterAttrs (_: v: v != null) {
    "tls-cert.pem" = cfg.tlsCertFile;
    "tls-key.pem" = cfg.tlsKeyFile;
    "upstream-ca.pem" = cfg.upstreamCaFile;
  };
  allCredentials = namedFiles // cfg.credentials;

  finalSettings =
    lib.recursiveUpdate cfg.settings
      ({
        policy = (cfg.settings.policy or { }) // {
          files = lib.optional hasInlinePolicy "${policyFile}" ++ cfg.policy.files;
        };
      }
      // lib.optionalAttrs (cfg.tlsCertFile != null || cfg.tlsKeyFile != null) {
        listen = (cfg.settings.listen or { })
          // lib.optionalAttrs (cfg.tlsCertFile != null) { tls_cert = "${credDir}/tls-cert.pem"; }
          // lib.optionalAttrs (cfg.tlsKeyFile != null) { tls_key = "${credDir}/tls-key.pem"; };
      }
      // lib.optionalAttrs (cfg.upstreamCaFile != null) {
        upstream = (cfg.settings.upstream or { }) // { ca = "${credDir}/upstream-ca.pem"; };
      });

  configFile = toml.generate "pvegate.toml" finalSettings;
  pvegate = lib.getExe cfg.package;
in
{
  options.services.pvegate = {
    enable = lib.mkEnableOption "pvegate, a policy-enforcing proxy for the Proxmox VE API";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The pvegate package (the flake's packages.default).";
    };

    settings = lib.mkOption {
      type = toml.type;
      default = { };
      example = lib.literalExpression ''
        {
          listen.address = "0.0.0.0:8006";
          upstream.url = "https://192.168.1.12:8006";
          log.format = "json";
        }
      '';
      description = ''
        The pvegate config file as Nix, rendered to TOML (see deploy/pvegate.example.toml).
        `policy.files` is filled in from `services.pvegate.policy`; `listen.tls_cert`,
        `listen.tls_key` and `upstream.ca` from the `*File` options.
      '';
    };

    policy = {
      settings = lib.mkOption {
        type = toml.type;
        default = { };
        example = { default_access = "readonly"; hint = "ask @ops in #infra"; exempt = [ "root@pam" ]; };
        description = "The policy's `[settings]` (strict, default_access, deny_actions, exempt, hint).";
      };
      guests = lib.mkOption {
        type = lib.types.listOf (lib.types.attrsOf lib.types.anything);
        default = [ ];
        example = lib.literalExpression ''
          (import "''${pvegate}/nix/lib.nix").guestsFromDefinitions {
            imported.doc1 = { vmid = 104; readonly = true; };
            managed.tofu-web = { vmid = 110; };
          }
        '';
        description = "One `[[guest]]` entry per guest: `{ vmid; access; name?; reason?; allow?; deny?; exempt?; hint?; }`.";
      };
      ranges = lib.mkOption {
        type = lib.types.listOf (lib.types.attrsOf lib.types.anything);
        default = [ ];
        example = [{ vmids = "9000-9099"; name = "templates"; access = "managed"; deny = [ "destroy" ]; }];
        description = "Range rules: `{ vmids = \"LO-HI\"; access; … }`.";
      };
      files = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ ];
        description = "Further policy files (outside the Nix store, e.g. edited by hand; reloaded on SIGHUP).";
      };
    };

    tlsCertFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/var/lib/acme/pvegate.lan/fullchain.pem";
      description = "Certificate chain pvegate serves (passed as a systemd credential).";
    };
    tlsKeyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/var/lib/acme/pvegate.lan/key.pem";
      description = "Its private key; may stay root-only (0600): systemd hands the service a copy.";
    };
    upstreamCaFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/etc/pvegate/pve-root-ca.pem";
      description = ''
        The Proxmox cluster CA (`/etc/pve/pve-root-ca.pem` on a node). Unlike a fingerprint, it
        stays valid when node certificates are renewed.
      '';
    };
    credentials = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = { "extra-ca.pem" = "/etc/ssl/private/extra-ca.pem"; };
      description = "More systemd credentials (name = source path); the service finds them under ${credDir}/<name>.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = (cfg.tlsCertFile == null) == (cfg.tlsKeyFile == null);
        message = "services.pvegate: set both tlsCertFile and tlsKeyFile, or neither.";
      }
      {
        assertion = hasInlinePolicy || cfg.policy.files != [ ] || (cfg.settings.policy.files or [ ]) != [ ];
        message = "services.pvegate: no policy: set services.pvegate.policy (guests, ranges, settings) or policy.files.";
      }
    ];

    systemd.services.pvegate = {
      description = "pvegate - policy-enforcing proxy for the Proxmox VE API";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ configFile ];
      serviceConfig = {
        ExecStartPre = "${pvegate} validate --config ${configFile}";
        ExecStart = "${pvegate} serve --config ${configFile}";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") allCredentials;
        # The hardening of deploy/pvegate.service, and more.
        DynamicUser = true;
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ];
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ];
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        # /var/lib/pvegate: the approvals state and its key ([approvals] in the config).
        StateDirectory = "pvegate";
        StateDirectoryMode = "0750";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
        RestrictNamespaces = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        LimitNOFILE = 65536;
      };
    };
  };
}
