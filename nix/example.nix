# Example NixOS configuration: pvegate on a small host in front of one Proxmox node, with the
# readonly guests derived from a definitions set (nix/example-policy.nix).
#
#   nixosConfigurations.gate = nixpkgs.lib.nixosSystem {
#     system = "x86_64-linux";
#     modules = [ pvegate.nixosModules.default ./hardware.nix (import "${pvegate}/nix/example.nix") ];
#   };
{ ... }:
let
  example = import ./example-policy.nix;
in
{
  services.pvegate = {
    enable = true;
    # Both stay root-only (0600); the service reads systemd's copies.
    tlsCertFile = "/var/lib/acme/pvegate.lan/fullchain.pem";
    tlsKeyFile = "/var/lib/acme/pvegate.lan/key.pem";
    # Copied from the node's /etc/pve/pve-root-ca.pem: survives certificate renewals.
    upstreamCaFile = "/etc/pvegate/pve-root-ca.pem";
    settings = {
      listen.address = "0.0.0.0:8006";
      upstream.url = "https://192.168.1.12:8006";
      log.format = "json";
    };
    policy = {
      inherit (example.policy) settings;
      # imported.<name> = { vmid; readonly = true; } become readonly guests,
      # managed.<name> = { vmid; } managed ones.
      guests = (import ./lib.nix).guestsFromDefinitions example.definitions;
      ranges = [
        { vmids = "9000-9099"; name = "templates"; access = "managed"; deny = [ "destroy" ]; }
      ];
    };
  };
  networking.firewall.allowedTCPPorts = [ 8006 ];
}
