{
  description = "pvegate: a policy-enforcing reverse proxy for the Proxmox VE API";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      # nix build .#  ->  result/bin/pvegate (plus man pages and shell completions)
      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/package.nix {
          gitCommit = self.shortRev or self.dirtyShortRev or "unknown";
        };
      });

      # imports = [ pvegate.nixosModules.default ]; services.pvegate = { enable = true; … };
      nixosModules.default = { lib, pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        services.pvegate.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      # Pure helpers (no nixpkgs): guestsFromDefinitions, mkPolicy, toTOML, readonlyVmids.
      lib = import ./nix/lib.nix;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      });
    };
}
