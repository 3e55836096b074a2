# pvegate built from this repository with nixpkgs' Rust tooling (dependencies from Cargo.lock).
{ lib, rustPlatform, installShellFiles, gitCommit ? "unknown" }:

rustPlatform.buildRustPackage {
  pname = "pvegate";
  version = (lib.importTOML ../Cargo.toml).package.version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../build.rs
      ../src
      ../benches
      ../policies
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # No .git in the Nix sandbox: build.rs takes the commit from here (the flake passes its rev).
  env.PVEGATE_GIT_COMMIT = gitCommit;

  nativeBuildInputs = [ installShellFiles ];

  # The tests drive the binary against a simulated Proxmox on loopback and run client suites
  # (Python, Chromium): run them with `bash tests/run-all.sh` in a checkout, not in the sandbox.
  doCheck = false;

  postInstall = ''
    installShellCompletion --cmd pvegate \
      --bash <($out/bin/pvegate completions bash) \
      --zsh <($out/bin/pvegate completions zsh) \
      --fish <($out/bin/pvegate completions fish)
    mkdir -p $out/share/man/man1
    $out/bin/pvegate man --dir $out/share/man/man1
  '';

  meta = {
    description = "Policy-enforcing reverse proxy for the Proxmox VE API";
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "pvegate";
    platforms = lib.platforms.linux;
  };
}
