#!/usr/bin/env bash
# Builds the Debian package (target/debian/pvegate_<version>_<arch>.deb) and checks what is in
# it with dpkg-deb: the binary (no debug info, at most 12 MB), the systemd unit, the config
# and policy as conffiles, the man pages, the shell completions and the maintainer scripts
# that create the system user.
#
#   tools/build-deb.sh            # needs cargo-deb: cargo install cargo-deb --locked
#   tools/build-deb.sh --check F  # only check an existing .deb
set -euo pipefail
cd "$(dirname "$0")/.."

check() {
    local deb="$1" listing info tmp
    listing="$(dpkg-deb -c "$deb")"
    info="$(dpkg-deb -I "$deb")"
    local fail=0
    for path in ./usr/bin/pvegate ./etc/pvegate/pvegate.toml ./etc/pvegate/policies/homelab.toml \
        ./usr/share/man/man1/pvegate.1.gz ./usr/share/man/man1/pvegate-serve.1.gz \
        ./usr/share/bash-completion/completions/pvegate ./usr/share/zsh/vendor-completions/_pvegate \
        ./usr/share/fish/vendor_completions.d/pvegate.fish ./usr/share/doc/pvegate/copyright \
        ./usr/share/doc/pvegate/deploy.md; do
        grep -qE " ${path//./\\.}( |$)" <<<"$listing" || { echo "missing in $deb: $path"; fail=1; }
    done
    grep -qE " \./(usr/)?lib/systemd/system/pvegate\.service( |$)" <<<"$listing" \
        || { echo "missing in $deb: the systemd unit"; fail=1; }
    for want in "Package: pvegate" "Depends:.*adduser" conffiles postinst postrm; do
        grep -qE "$want" <<<"$info" || { echo "dpkg-deb -I $deb lacks: $want"; fail=1; }
    done
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    dpkg-deb -e "$deb" "$tmp/DEBIAN"
    for f in /etc/pvegate/pvegate.toml /etc/pvegate/policies/homelab.toml; do
        grep -qx "$f" "$tmp/DEBIAN/conffiles" || { echo "not a conffile: $f"; fail=1; }
    done
    grep -q "adduser --system" "$tmp/DEBIAN/postinst" || { echo "postinst creates no system user"; fail=1; }
    dpkg-deb -x "$deb" "$tmp/root"
    grep -q "^User=pvegate" "$tmp"/root/*/systemd/system/pvegate.service 2>/dev/null \
        || grep -q "^User=pvegate" "$tmp"/root/usr/lib/systemd/system/pvegate.service \
        || { echo "the unit does not run as user pvegate"; fail=1; }
    local bin="$tmp/root/usr/bin/pvegate" size
    size=$(stat -c %s "$bin")
    if [ "$size" -gt $((12 * 1024 * 1024)) ]; then
        echo "usr/bin/pvegate is $size bytes: over 12 MB (debug info left in?)"; fail=1
    fi
    if readelf -S "$bin" 2>/dev/null | grep -q '\.debug_info'; then
        echo "usr/bin/pvegate carries .debug_info"; fail=1
    fi
    "$bin" --version | grep -q "Proxmox VE" || { echo "usr/bin/pvegate --version is wrong"; fail=1; }
    [ "$fail" = 0 ] || { echo "package check FAILED: $deb"; return 1; }
    echo "package ok: $deb ($(du -h "$deb" | cut -f1), binary $((size / 1024 / 1024)) MB)"
}

if [ "${1:-}" = "--check" ]; then
    check "$2"
    exit
fi

command -v cargo-deb >/dev/null || { echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 2; }
cargo build --release --locked --quiet --bin pvegate
mkdir -p target/pkg/man
rm -f target/pkg/man/*.1
target/release/pvegate man --dir target/pkg/man
target/release/pvegate completions bash >target/pkg/pvegate.bash
target/release/pvegate completions zsh >target/pkg/_pvegate
target/release/pvegate completions fish >target/pkg/pvegate.fish
deb="$(cargo deb --no-build --quiet 2>/dev/null | tail -n1 || true)"
[ -f "$deb" ] || deb="$(ls -t target/debian/pvegate_*.deb | head -n1)"
check "$deb"
