#!/usr/bin/env python3
"""Generate pvegate's endpoint catalogue (src/pve/catalogue.json) from the PVE API schema.

The schema is the one Proxmox publishes in pve-docs as `api-viewer/apidata.js` (a JSON array in a
JavaScript file; every PVE node also serves it as `/pve-docs/api-viewer/apidoc.js`). The
catalogue is built from two versions of it, listed in SOURCES below:

    PVE 9.1: pve-docs commit e5010dcea566a205770572cfbc5fe0af220d5077 ("bump version to 9.1.3")
    PVE 8.4: pve-docs commit fa0b4f6ba0eb7c6a77dec8cb6713bb3bbcd83ebc ("bump version to 8.4.2")

Fetch them (about 4 MB each; do not commit them), from the repository root:

    mkdir -p target/pve-schema
    curl -fsSL -o target/pve-schema/apidata-9.1.js \
      'https://git.proxmox.com/?p=pve-docs.git;a=blob_plain;f=api-viewer/apidata.js;hb=e5010dcea566a205770572cfbc5fe0af220d5077'
    curl -fsSL -o target/pve-schema/apidata-8.4.js \
      'https://git.proxmox.com/?p=pve-docs.git;a=blob_plain;f=api-viewer/apidata.js;hb=fa0b4f6ba0eb7c6a77dec8cb6713bb3bbcd83ebc'

(or from the GitHub mirror: https://raw.githubusercontent.com/proxmox/pve-docs/<commit>/api-viewer/apidata.js,
or `git clone https://git.proxmox.com/git/pve-docs.git` and
`git -C pve-docs show <commit>:api-viewer/apidata.js > ...`). Then regenerate and check:

    python3 tools/gen_catalogue.py target/pve-schema/apidata-9.1.js target/pve-schema/apidata-8.4.js
    cargo test --test oracles

Each input is checked against the schema digest recorded in SOURCES, so the catalogue's header
always names the schema it was built from. To move to a newer schema, fetch the newer file,
update its SOURCES entry (commit, version text, digest: the error message prints the new digest)
and review the hand-written tables in tools/pve_apidata.py against the Perl sources.

tools/pve_apidata.py reads the files (it parses the JSON array, it never runs JavaScript) and adds
the hand-reviewed facts the schema lacks. The output is the union of both versions and keeps only
facts that pvegate needs to route a request and to find the guests it names:

* path template, method, the PVE versions that have the endpoint;
* `rest_of_path_param`, `websocket`, `download_allowed`, `all_guests_when_omitted` (a flag);
* per parameter: name, whether it is a path parameter, type, format, `-list`-ness, the
  format of array items, the `vmid_ref` hint, and for property strings the sub-keys
  that carry a volume ID (plus the default key).

No description text is copied. The output is deterministic (sorted), one endpoint per line,
so a regeneration shows up as a readable diff.
"""

import argparse
import json
import os
import re
import sys

import pve_apidata

# Formats of property-string sub-keys whose value is a volume ID (or a path standing in for one).
VOLUME_FORMATS = {
    "pve-volume-id",
    "pve-volume-id-or-qm-path",
    "pve-volume-id-or-absolute-path",
}

# Named formats that are property strings carrying volumes but whose sub-keys the schema does
# not expand (it only gives the format name). Reviewed by hand against qemu-server.
NAMED_VOLUME_FORMATS = {
    # `cdrom` is an alias for ide2: `[file=]<volume>,media=cdrom`.
    "pve-qm-ide": {"ref": "property-string:file,volume", "keys": ["file", "volume"], "default": "file"},
    # cloud-init snippets: `user=<volume>,network=<volume>,meta=<volume>,vendor=<volume>`.
    "pve-qm-cicustom": {
        "ref": "property-string:meta,network,user,vendor",
        "keys": ["meta", "network", "user", "vendor"],
        "default": None,
    },
}

# Host-reaching values (see policies/README.md, "Host paths and devices"): formats whose value
# may be an absolute host path instead of a volume ID, or a host device path.
HOST_PATH_FORMATS = {
    "pve-volume-id-or-qm-path",
    "pve-volume-id-or-absolute-path",
    "pve-lxc-mp-string",
    "pve-lxc-dev-string",
}

# Sub-keys that share a host-path format but name a path inside the guest (reviewed by hand).
GUEST_SIDE_KEYS = {("mp[n]", "mp")}

# Host-reaching parameters recognised by name or named format, reviewed by hand against
# qemu-server and pve-container: `(endpoint-path regex, parameter) -> kind`.
HOST_BY_NAME = [
    (r"^/nodes/\{node\}/qemu(/\{vmid\}/config)?$", "args", "args"),
    (r"^/nodes/\{node\}/(qemu|lxc)(/\{vmid\}/config)?$", "hookscript", "hookscript"),
    (r"^/nodes/\{node\}/qemu(/\{vmid\}/config)?$", "hostpci[n]", "pci"),
    (r"^/nodes/\{node\}/qemu(/\{vmid\}/config)?$", "usb[n]", "usb"),
    (r"^/nodes/\{node\}/qemu(/\{vmid\}/config)?$", "serial[n]", "paths"),
    (r"^/nodes/\{node\}/qemu(/\{vmid\}/config)?$", "parallel[n]", "paths"),
    # Restore sources may be host paths (`archive=/path/x.vma`, `ostemplate=/path/x.tar`).
    (r"^/nodes/\{node\}/qemu$", "archive", "paths"),
    (r"^/nodes/\{node\}/lxc$", "ostemplate", "paths"),
]

# Parameters that look host-reaching to the heuristics below but act on the node itself, not
# through a guest: judged by their action (`storage.write`), documented as indirect changes.
HOST_INDIRECT = {
    ("/nodes/{node}/disks/initgpt", "disk"),
    ("/nodes/{node}/disks/wipedisk", "disk"),
    ("/nodes/{node}/disks/smart", "disk"),
}


def host_facts(path, p):
    """`(kind, sub-keys)` for a host-reaching parameter, `("unreviewed", [])` for one that looks
    host-reaching but is in no table (the coverage test fails on it), or None."""
    name = p["name"]
    keys = set()
    fields = p.get("fields") if isinstance(p.get("fields"), dict) else {}
    for k, f in fields.items():
        if isinstance(f, dict) and f.get("format") in HOST_PATH_FORMATS and (name, k) not in GUEST_SIDE_KEYS:
            keys.add(k)
    for k, f in fields.items():
        if isinstance(f, dict) and f.get("alias") in keys:
            keys.add(k)
    if keys:
        return ("paths", sorted(keys))
    # `cdrom` (an alias for ide2) names its format only: `[file=]<volume or path>`.
    if p.get("format") == "pve-qm-ide":
        return ("paths", ["file", "volume"])
    # Values without a sub-key name are the whole value (`serial0=/dev/ttyS0`) or, for
    # `hostpci`/`usb`, the `host=` key (their default key).
    for rx, pname, kind in HOST_BY_NAME:
        if pname == name and re.match(rx, path):
            return (kind, [])
    fmt = p.get("format")
    pattern = p.get("pattern") or ""
    looks = (
        fmt in HOST_PATH_FORMATS
        or fmt == "pve-qm-hostpci"
        or "/dev" in pattern
        or pattern.startswith("^/")
        or any(isinstance(f, dict) and "/dev" in (f.get("pattern") or "") for f in fields.values())
    )
    if looks and (path, name) not in HOST_INDIRECT:
        return ("unreviewed", [])
    return None


# Parameters the schema does not hint at but which carry a volume ID (reviewed by hand).
EXTRA_REFS = {
    # Copy a volume: `target` is the target volume ID.
    ("POST", "/nodes/{node}/storage/{storage}/content/{volume}", "target"): "volume-id",
}


def param_facts(method, path, p):
    """Reduce one schema parameter to the facts pvegate uses."""
    out = {"name": p["name"]}
    if p.get("in") == "path":
        out["in_path"] = True
    out["type"] = p.get("type", "string")
    fmt = p.get("format")
    if isinstance(fmt, str):
        out["format"] = "property-string" if fmt == "<property-string>" else fmt
        if fmt.endswith("-list"):
            out["list"] = True
    items = p.get("items")
    if isinstance(items, dict) and isinstance(items.get("format"), str):
        out["items_format"] = items["format"]
    ref = p.get("vmid_ref")
    extra = EXTRA_REFS.get((method, path, p["name"]))
    if extra and not ref:
        ref = extra
    named = NAMED_VOLUME_FORMATS.get(fmt) if isinstance(fmt, str) else None
    if named and not ref:
        ref = named["ref"]
    if ref:
        out["vmid_ref"] = ref

    # Property-string sub-keys that carry a volume.
    keys, default = set(), None
    fields = p.get("fields")
    if isinstance(fields, dict):
        for k, f in fields.items():
            if not isinstance(f, dict):
                continue
            ffmt = f.get("format")
            if f.get("default_key"):
                default = k
            if ffmt in VOLUME_FORMATS:
                keys.add(k)
            # LXC: `volume` and `mp` share a format; only the default key (`volume`) is a volume.
            if ffmt == "pve-lxc-mp-string" and f.get("default_key"):
                keys.add(k)
        for k, f in fields.items():
            if isinstance(f, dict) and f.get("alias") in keys:
                keys.add(k)
    if named:
        keys.update(named["keys"])
        default = default or named["default"]
    if isinstance(ref, str) and ref.startswith("property-string:"):
        keys.update(x for x in ref.split(":", 1)[1].split(",") if x)
    if keys:
        out["volume_keys"] = sorted(keys)
        if default:
            out["default_key"] = default
    host = host_facts(path, p)
    if host:
        out["host"] = host[0]
        if host[1]:
            out["host_keys"] = host[1]
            dflt = [k for k, f in (p.get("fields") or {}).items() if isinstance(f, dict) and f.get("default_key")]
            named = NAMED_VOLUME_FORMATS.get(p.get("format"))
            if not dflt and named and named["default"]:
                dflt = [named["default"]]
            if dflt and dflt[0] in host[1]:
                out["host_default"] = dflt[0]
    if not p.get("optional") and p.get("in") != "path":
        out["required"] = True
    return out


def merge_params(a, b):
    """Union of two parameter lists by name; facts from `a` win, sub-key sets are merged."""
    by_name = {p["name"]: dict(p) for p in a}
    for p in b:
        q = by_name.get(p["name"])
        if q is None:
            by_name[p["name"]] = dict(p)
            continue
        if "volume_keys" in p:
            q["volume_keys"] = sorted(set(q.get("volume_keys", [])) | set(p["volume_keys"]))
        if "host_keys" in p:
            q["host_keys"] = sorted(set(q.get("host_keys", [])) | set(p["host_keys"]))
        for k in ("vmid_ref", "default_key", "format", "items_format", "list", "host", "host_default"):
            if k not in q and k in p:
                q[k] = p[k]
    return [by_name[n] for n in sorted(by_name)]


def endpoint_facts(e, version):
    out = {"path": e["path"], "method": e["method"], "pve": [version]}
    if e.get("rest_of_path_param"):
        out["rest_of_path_param"] = e["rest_of_path_param"]
    if e.get("websocket"):
        out["websocket"] = True
    if e.get("download_allowed"):
        out["download_allowed"] = True
    if e.get("all_guests_when_omitted"):
        out["all_guests_when_omitted"] = True
    out["params"] = [param_facts(e["method"], e["path"], p) for p in e.get("params", [])]
    return out


# The schema versions the catalogue is built from, in the order their facts take precedence.
# `digest` is pve_apidata.schema_digest() of the file at `source_commit`.
SOURCES = [
    {
        "pve": "9.1",
        "pve_version": "PVE 9.1 (schema regenerated 2026-04-30 in pve-docs commit a8736b6d; matches pve-manager ~9.1.9)",
        "source_repo": "proxmox/pve-docs",
        "source_path": "api-viewer/apidata.js",
        "source_commit": "e5010dcea566a205770572cfbc5fe0af220d5077",
        "digest": "1ec4166e67a5a3fff111107f534c47c7e923274f1b4675f8e407adaa024238e9",
    },
    {
        "pve": "8.4",
        "pve_version": "PVE 8.4 (pve-docs stable-bookworm 8.4.2; schema regenerated 2026-03-16, commit ae1bf37)",
        "source_repo": "proxmox/pve-docs",
        "source_path": "api-viewer/apidata.js",
        "source_commit": "fa0b4f6ba0eb7c6a77dec8cb6713bb3bbcd83ebc",
        "digest": "04efdc66b72c864fe7f5295a0d6ec4891e821d4d04df1552f739403c635eff56",
    },
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("apidata_9_1", help="pve-docs api-viewer/apidata.js at the PVE 9.1 commit in SOURCES")
    ap.add_argument("apidata_8_4", help="pve-docs api-viewer/apidata.js at the PVE 8.4 commit in SOURCES")
    ap.add_argument("-o", "--output", default=os.path.join(os.path.dirname(__file__), "..", "src", "pve", "catalogue.json"))
    args = ap.parse_args()

    merged = {}
    metas = []
    for path, source in zip((args.apidata_9_1, args.apidata_8_4), SOURCES):
        if not os.path.exists(path):
            sys.exit(f"missing schema file {path}: fetch it as this script's docstring shows")
        schema = pve_apidata.read_schema(path)
        digest = pve_apidata.schema_digest(schema)
        if digest != source["digest"]:
            sys.exit(
                f"{path} is not the PVE {source['pve']} schema of pve-docs commit {source['source_commit']} "
                f"(schema digest {digest}). Fetch that commit's api-viewer/apidata.js, or, to move to a "
                f"newer schema, update SOURCES in {__file__} and review tools/pve_apidata.py."
            )
        data = {"endpoints": pve_apidata.endpoints(schema)}
        label = source["pve"]
        metas.append({k: v for k, v in source.items() if k != "digest"} | {"endpoint_count": len(data["endpoints"])})
        for e in data["endpoints"]:
            key = (e["path"], e["method"])
            facts = endpoint_facts(e, label)
            if key not in merged:
                merged[key] = facts
                continue
            m = merged[key]
            m["pve"] = sorted(set(m["pve"]) | {label})
            for flag in ("rest_of_path_param", "websocket", "download_allowed", "all_guests_when_omitted"):
                if flag in facts and flag not in m:
                    m[flag] = facts[flag]
            m["params"] = merge_params(m["params"], facts["params"])

    order = {"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}
    endpoints = sorted(merged.values(), key=lambda e: (e["path"], order.get(e["method"], 9)))
    for e in endpoints:
        e["params"] = sorted(e["params"], key=lambda p: p["name"])

    header = {
        "generated_by": "tools/gen_catalogue.py -- GENERATED FILE, DO NOT EDIT BY HAND",
        "regenerate": "python3 tools/gen_catalogue.py APIDATA_9_1_JS APIDATA_8_4_JS  (fetch commands in its docstring; then: cargo test --test oracles)",
        "sources": metas,
        "endpoint_count": len(endpoints),
    }
    lines = ["{", '"header": ' + json.dumps(header, sort_keys=True) + ",", '"endpoints": [']
    for i, e in enumerate(endpoints):
        lines.append(json.dumps(e, sort_keys=False, separators=(",", ":")) + ("," if i + 1 < len(endpoints) else ""))
    lines.append("]")
    lines.append("}")
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(endpoints)} endpoints to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
