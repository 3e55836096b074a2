"""Read the Proxmox VE API schema that pve-docs publishes as `api-viewer/apidata.js`.

Used by tools/gen_catalogue.py; not a program of its own.

`apidata.js` is a JavaScript file whose only data is one JSON array (`const apiSchema = [...];`):
a tree of path nodes, each with `path`, `children` and `info` (method -> handler description with
`parameters.properties`). A node's `/pve-docs/api-viewer/apidoc.js` has the same array followed by
the viewer code. This module finds the array, parses it as JSON (it never runs JavaScript) and
turns it into one flat record per (path, method) holding only what the generator reads:

    {"path", "method", "download_allowed"?, "rest_of_path_param"?, "websocket"?,
     "all_guests_when_omitted"?, "params": [param, ...]}

    param = {"name", "in": "path"?, "type"?, "format"?, "items": {"format"?}?,
             "fields": {sub_key: {"format"?, "alias"?, "default_key"?}}?,
             "optional"?, "vmid_ref"?}

`format` is the schema's format name, or `<property-string>` when the schema spells the format
out as a table of sub-keys (those sub-keys are then in `fields`; a nested spelled-out format is
again `<property-string>`).

Some facts pvegate needs are not in the schema at all (which path parameter takes the rest of
the path, which calls act on every guest when a parameter is left out) or only by convention
(which parameter names carry a guest ID). They are the hand-reviewed tables below, each entry
checked against the Perl sources named in its comment.
"""

import hashlib
import json
import re

# --------------------------------------------------------------------------------------------
# Hand-reviewed annotations
# --------------------------------------------------------------------------------------------

# Formats whose value names a guest, directly or inside a larger ID. The value is the
# `vmid_ref` kind the catalogue carries (src/pve/catalogue.rs `VmidRef` reads it).
GUEST_FORMATS = {
    "pve-vmid": "vmid",                            # 100
    "pve-vmid-list": "vmid-list",                  # 100,101 (also ; and space separated)
    "pve-ha-resource-or-vm-id": "ha-sid",          # vm:100, ct:100 or a bare 100
    "pve-ha-resource-id": "ha-sid",
    "pve-ha-resource-id-list": "ha-sid-list",
    "pve-replication-job-id": "replication-job-id",  # <vmid>-<n>
    "pve-volume-id": "volume-id",                  # <storage>:<volume>, owner in the name
    "pve-volume-id-or-qm-path": "volume-id",
    "pve-volume-id-or-absolute-path": "volume-id",
}

# Sub-keys of a spelled-out property string that hold a volume ID (qemu-server disks: `file`,
# `import-from`; pve-container mount points: `volume`). Not the container `mp` key: that is a
# path inside the container.
VOLUME_SUB_KEYS = {"file", "import-from", "volume"}

# Parameter names that carry a guest (or something that belongs to one) although their format
# says nothing. Ignored when the parameter is an enum (e.g. pve-container's move_volume, whose
# `volume` is a mount point name). Checked against qemu-server (create/restore), pve-container
# (create/restore), pve-storage (content, extractconfig), pve-manager (vzdump, bulk actions,
# tasks) and pve-access-control (pools).
GUEST_PARAM_NAMES = {
    "archive": "volume-id",       # qemu-server restore: the backup archive to restore from
    "ostemplate": "volume-id",    # pve-container create/restore: template or backup archive
    "volume": "volume-id",        # pve-storage content calls, extractconfig
    "upid": "upid",               # task ID; the guest ID is one of its fields
    "vmid": "vmid",
    "newid": "vmid",              # clone target
    "target-vmid": "vmid",        # move disk/volume to another guest
    "guest": "vmid",              # cluster resources / metrics filters
    "vms": "vmid-list",           # startall/stopall/migrateall, bulk actions
    "exclude": "vmid-list",       # vzdump
    "sid": "ha-sid",              # HA resources
    "resources": "ha-sid-list",   # HA rules
    "pool": "pool",               # a resource pool: its member guests
    "poolid": "pool",
}

# (path, parameter) -> `vmid_ref` kind that replaces what the two tables above would give;
# None removes the hint (a name that looks like a guest reference but is not one).
PARAM_REF_OVERRIDES = {
    ("/access/acl", "path"): "acl-path",            # ACL paths such as /vms/100, /pool/<id>
    ("/access/permissions", "path"): "acl-path",
    ("/cluster/ha/rules", "resource"): "ha-sid",    # list filter, e.g. vm:100
    ("/nodes/{node}/execute", "commands"): "nested-api-calls",  # JSON list of {path, method, args}
    ("/storage", "base"): None,                     # LVM on iSCSI: base volume of the storage
    ("/storage", "pool"): None,                     # Ceph/ZFS pool, not a PVE resource pool
    ("/storage/{storage}", "pool"): None,
    ("/storage", "volume"): None,                   # PVE 8 GlusterFS volume name
    ("/storage/{storage}", "volume"): None,
}

# Path templates whose last parameter takes every remaining path segment, joined with `/`.
# The schema cannot show this: pve-storage (PVE/API2/Storage/Content.pm, mounted from
# Status.pm) and pve-firewall (PVE/API2/Firewall/IPSet.pm) register these sub-handlers so that
# the router joins the remaining segments into one value (a volume name may contain `/`, an
# IPv6 CIDR is `addr/len`).
REST_OF_PATH_PARAMS = {
    "/nodes/{node}/storage/{storage}/content/{volume}": "volume",
    "/cluster/firewall/ipset/{name}/{cidr}": "cidr",
    "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}/{cidr}": "cidr",
    "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}/{cidr}": "cidr",
}

# (method, path) -> why the call may act on every guest (of the node, the cluster or a storage)
# without naming any; the catalogue only keeps the flag. Reviewed against pve-manager
# (PVE/API2/Nodes.pm, Cluster/BulkAction, Cluster/Backup.pm, VZDump.pm, HA status) and
# pve-storage (prunebackups).
ALL_GUESTS_WHEN_OMITTED = {
    ("POST", "/nodes/{node}/startall"): "no vms: every non-HA guest on the node; also clears backup locks",
    ("POST", "/nodes/{node}/stopall"): "no vms: every non-HA guest on the node",
    ("POST", "/nodes/{node}/suspendall"): "no vms: every non-HA VM on the node",
    ("POST", "/nodes/{node}/migrateall"): "no vms: every guest on the node, HA and templates too",
    ("POST", "/cluster/bulk-action/guest/start"): "no vms: every guest in the cluster",
    ("POST", "/cluster/bulk-action/guest/shutdown"): "no vms: every guest in the cluster",
    ("POST", "/cluster/bulk-action/guest/suspend"): "no vms: every VM in the cluster",
    ("POST", "/cluster/bulk-action/guest/migrate"): "no vms: every guest in the cluster",
    ("POST", "/nodes/{node}/vzdump"): "all=1, exclude=... or pool=...: chosen when the backup runs",
    ("POST", "/cluster/backup"): "a job with all/exclude/pool: chosen each time the job runs",
    ("PUT", "/cluster/backup/{id}"): "a job with all/exclude/pool: chosen each time the job runs",
    ("DELETE", "/nodes/{node}/storage/{storage}/prunebackups"): "no vmid: backups of every guest",
    ("POST", "/nodes/{node}/status"): "reboot/shutdown of the node stops every guest on it",
    ("POST", "/cluster/ha/status/disarm-ha"): "every HA resource",
    ("POST", "/cluster/ha/status/arm-ha"): "every HA resource",
}

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

PROPERTY_STRING = "<property-string>"


def read_schema(path):
    """Parse the schema array out of an apidata.js / apidoc.js file (or a plain JSON array)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found = re.search(r"\bapiSchema\s*=\s*", text)
    start = text.index("[", found.end() if found else 0)
    schema, _ = json.JSONDecoder().raw_decode(text, start)
    if not isinstance(schema, list):
        raise ValueError(f"{path}: the apiSchema value is not a JSON array")
    return schema


def schema_digest(schema):
    """SHA-256 of the schema's canonical JSON: identifies the schema whatever file carried it."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _format_name(fmt):
    """The schema's format name, or `<property-string>` for a spelled-out sub-key table."""
    if isinstance(fmt, dict):
        return PROPERTY_STRING
    return fmt


def _sub_keys(fmt):
    """Sub-keys of a spelled-out property string, with the three facts the generator reads."""
    fields = {}
    for key in sorted(fmt):
        spec = fmt[key]
        if not isinstance(spec, dict):
            continue
        kept = {}
        if "format" in spec:
            kept["format"] = _format_name(spec["format"])
        for fact in ("alias", "default_key"):
            if fact in spec:
                kept[fact] = spec[fact]
        fields[key] = kept
    return fields


def _guest_ref(name, param, raw):
    """The `vmid_ref` kind the tables above give a parameter, before per-path overrides."""
    fmt = param.get("format")
    if isinstance(fmt, str) and fmt in GUEST_FORMATS:
        return GUEST_FORMATS[fmt]
    if param.get("items", {}).get("format") == "pve-vmid":
        return "vmid-array"
    if fmt == PROPERTY_STRING:
        volume_keys = sorted(k for k in param.get("fields", {}) if k in VOLUME_SUB_KEYS)
        if volume_keys:
            return "property-string:" + ",".join(volume_keys)
    if name in GUEST_PARAM_NAMES and not raw.get("enum"):
        return GUEST_PARAM_NAMES[name]
    return None


def _param(path, name, raw, path_params):
    param = {"name": name}
    if name in path_params:
        param["in"] = "path"
    if "type" in raw:
        param["type"] = raw["type"]
    if "format" in raw and raw["format"] is not None:
        param["format"] = _format_name(raw["format"])
        if isinstance(raw["format"], dict):
            param["fields"] = _sub_keys(raw["format"])
    items = raw.get("items")
    if isinstance(items, dict):
        param["items"] = {}
        if items.get("format") is not None:
            param["items"]["format"] = _format_name(items["format"])
    if "optional" in raw:
        param["optional"] = raw["optional"]
    ref = _guest_ref(name, param, raw)
    if (path, name) in PARAM_REF_OVERRIDES:
        ref = PARAM_REF_OVERRIDES[(path, name)]
    if ref:
        param["vmid_ref"] = ref
    return param


def _handlers(nodes):
    """(path, method, info) for every handler in the tree, depth first, methods by name."""
    for node in nodes:
        info = node.get("info") or {}
        for method in sorted(info):
            yield node["path"], method, info[method]
        yield from _handlers(node.get("children") or [])


def endpoints(schema):
    """One record per (path, method), sorted by path then method (see the module doc)."""
    out = []
    for path, method, info in _handlers(schema):
        path_params = re.findall(r"\{([^}]+)\}", path)
        props = (info.get("parameters") or {}).get("properties") or {}
        e = {"path": path, "method": method}
        if info.get("download_allowed"):
            e["download_allowed"] = True
        if path in REST_OF_PATH_PARAMS:
            e["rest_of_path_param"] = REST_OF_PATH_PARAMS[path]
        if path.endswith("websocket"):
            e["websocket"] = True
        if (method, path) in ALL_GUESTS_WHEN_OMITTED:
            e["all_guests_when_omitted"] = True
        e["params"] = [_param(path, name, props[name], path_params) for name in sorted(props)]
        out.append(e)
    out.sort(key=lambda e: (e["path"], e["method"]))
    return out
