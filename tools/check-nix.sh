#!/usr/bin/env bash
# Checks the Nix files without nixpkgs (Debian's nix-bin is enough):
#   1. every .nix file parses (nix-instantiate --parse);
#   2. nix/lib.nix evaluates: definitions -> guests -> TOML;
#   3. nix/module.nix evaluates with a stub lib (nix/tests/stub-lib.nix) and nix/example.nix:
#      the unit's commands, credentials and hardening, and the config and policy it renders;
#   4. the real binary accepts what the module renders: `pvegate policy show` on the rendered
#      config and policy shows 104 and 109 readonly and 105 and 110 managed.
# Not checked here (needs nixpkgs): building packages.default, pkgs.formats.toml's own
# rendering, the NixOS module system's type checks, and booting the service.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nix-instantiate >/dev/null || { echo "nix-instantiate is missing: apt-get install nix-bin" >&2; exit 2; }
export NIX_STATE_DIR="${NIX_STATE_DIR:-$(mktemp -d)}"
bin="${PVEGATE_BIN:-target/debug/pvegate}"
[ -x "$bin" ] || cargo build --quiet --bin pvegate

fail=0
while IFS= read -r f; do
    nix-instantiate --parse "$f" >/dev/null || { echo "does not parse: $f"; fail=1; }
done < <(git ls-files --cached --others --exclude-standard '*.nix' 2>/dev/null || find . -name '*.nix' -not -path './target/*')
[ "$fail" = 0 ] || exit 1

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
nix-instantiate --eval --strict --json nix/tests/eval-module.nix >"$tmp/eval.json"

python3 - "$tmp" "$bin" <<'PY'
import json, subprocess, sys
tmp, binary = sys.argv[1], sys.argv[2]
d = json.load(open(f"{tmp}/eval.json"))
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
want(d["execStart"].endswith("/bin/pvegate serve --config /nix/store/stub-pvegate.toml"), f"ExecStart: {d['execStart']}")
want("validate --config" in d["execStartPre"], "ExecStartPre does not validate")
want("tls-key.pem:/var/lib/acme/pvegate.lan/key.pem" in d["loadCredential"], f"LoadCredential: {d['loadCredential']}")
want(d["dynamicUser"] is True and d["protectSystem"] == "strict", "hardening missing")
want(all(d["assertions"]), "an assertion fails for the example")
want('tls_key = "/run/credentials/pvegate.service/tls-key.pem"' in d["configToml"], "tls_key is not the credential")
want('ca = "/run/credentials/pvegate.service/upstream-ca.pem"' in d["configToml"], "upstream.ca is not the credential")
# Point the rendered config at the rendered policy (the store path is a stub) and drop the
# credential paths, which exist only inside the unit; then let pvegate judge both.
policy = f"{tmp}/policy.toml"
open(policy, "w").write(d["policyToml"])
cfg = d["configToml"].replace(d["policyFiles"][0], policy)
cfg = "\n".join(l for l in cfg.splitlines() if "/run/credentials/" not in l)
open(f"{tmp}/pvegate.toml", "w").write(cfg + "\n")
r = subprocess.run([binary, "policy", "show", "--config", f"{tmp}/pvegate.toml"], capture_output=True, text=True)
want(r.returncode == 0, f"pvegate policy show failed: {r.stderr}")
for line in ["guest 104 'doc1'  readonly", "guest 109 'igp'  readonly", "guest 105 'old-wiki'  managed",
             "guest 110 'tofu-web'  managed", "guests 9000-9099 'templates'  managed", "hint            ask @ops in #infra"]:
    want(line in r.stdout, f"policy show lacks {line!r}:\n{r.stdout}")
if problems:
    print("nix check FAILED:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("nix ok: every .nix parses; lib.nix and module.nix (stub lib) evaluate; pvegate accepts the rendered config and policy")
PY
