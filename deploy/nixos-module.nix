# Kept for existing imports: the NixOS module now lives in nix/module.nix and the flake at the
# repository root exports it as nixosModules.default (with the package set). Without flakes:
#   imports = [ ./pvegate/deploy/nixos-module.nix ];
#   services.pvegate.package = pkgs.callPackage ./pvegate/nix/package.nix { };
import ../nix/module.nix
