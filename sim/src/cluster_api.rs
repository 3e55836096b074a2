//! The cluster-wide routes: `/pools` (and PVE 9's `/pools?poolid=` forms), `/storage`,
//! `/cluster/mapping/{pci,usb,dir}`, `/cluster/backup`, `/cluster/ha/{resources,groups,
//! rules,status}`, `/cluster/options`, `/cluster/tasks`, `/cluster/status`. The state
//! behind them is `state::cluster`; every node answers them the same.

use serde_json::{json, Value};

use super::api::{Call, Outcome};
use super::params::ParamsExt;
use super::reply::{ApiError, ApiOk};

fn ok(v: Value) -> Outcome {
    Outcome::Api(Ok(ApiOk::from(v)))
}

fn done(r: Result<(), ApiError>) -> Outcome {
    Outcome::Api(r.map(|()| ApiOk::from(Value::Null)))
}

fn value(r: Result<Value, ApiError>) -> Outcome {
    Outcome::Api(r.map(ApiOk::from))
}

fn subdirs(names: &[&str]) -> Outcome {
    ok(Value::Array(
        names.iter().map(|n| json!({ "subdir": n })).collect(),
    ))
}

/// A path parameter, unless the body or query contradicts it.
fn path_param<'a>(c: &Call<'_>, name: &str, value: &'a str) -> Result<&'a str, ApiError> {
    match c.params.get(name) {
        Some(Some(v)) if v != value => Err(ApiError::param(
            name,
            "duplicate parameter (already defined in URI) with conflicting values!",
        )),
        _ => Ok(value),
    }
}

/// Routes a cluster-wide call; `None` when the path is not one of these.
pub(crate) fn route(c: &mut Call<'_>, segs: &[&str]) -> Option<Outcome> {
    let m = c.method;
    let p = &c.params;
    Some(match (m, segs) {
        // ---- pools ----
        ("GET", ["pools"]) => value(c.shared.state().pool_index(p)),
        ("POST", ["pools"]) => done(c.shared.state().pool_create(p)),
        ("PUT", ["pools"]) => match p.str("poolid") {
            Some(id) => done(c.shared.state().pool_update(id, p)),
            None => Outcome::Api(Err(ApiError::missing("poolid"))),
        },
        ("DELETE", ["pools"]) => match p.str("poolid") {
            Some(id) => done(c.shared.state().pool_delete(id)),
            None => Outcome::Api(Err(ApiError::missing("poolid"))),
        },
        (_, ["pools", id]) => {
            let id = match path_param(c, "poolid", id) {
                Ok(id) => id,
                Err(e) => return Some(Outcome::Api(Err(e))),
            };
            match m {
                "GET" => value(c.shared.state().pool_read(id, p)),
                "PUT" => done(c.shared.state().pool_update(id, p)),
                "DELETE" => done(c.shared.state().pool_delete(id)),
                _ => return None,
            }
        }

        // ---- storages ----
        ("GET", ["storage"]) => ok(c.shared.state().storage_index(p)),
        ("POST", ["storage"]) => value(c.shared.state().storage_create(p)),
        (_, ["storage", id]) => {
            let id = match path_param(c, "storage", id) {
                Ok(id) => id,
                Err(e) => return Some(Outcome::Api(Err(e))),
            };
            match m {
                "GET" => value(c.shared.state().storage_read(id)),
                "PUT" => value(c.shared.state().storage_update(id, p)),
                "DELETE" => done(c.shared.state().storage_delete(id)),
                _ => return None,
            }
        }

        // ---- cluster index ----
        ("GET", ["cluster"]) => subdirs(&[
            "backup",
            "ha",
            "mapping",
            "options",
            "resources",
            "status",
            "tasks",
            "nextid",
            "log",
            "config",
            "firewall",
            "replication",
            "sdn",
            "ceph",
            "jobs",
            "metrics",
            "notifications",
            "acme",
        ]),
        ("GET", ["cluster", "status"]) => {
            let local = c.shared.node.clone();
            ok(c.shared.state().cluster_status(&local))
        }
        ("GET", ["cluster", "tasks"]) => ok(c.shared.state().cluster_tasks()),
        ("GET", ["cluster", "options"]) => ok(c.shared.state().cluster_options()),
        ("PUT", ["cluster", "options"]) => done(c.shared.state().cluster_options_set(p)),

        // ---- resource mappings ----
        ("GET", ["cluster", "mapping"]) => subdirs(&["dir", "pci", "usb"]),
        ("GET", ["cluster", "mapping", ty]) => value(c.shared.state().mapping_index(ty, p)),
        ("POST", ["cluster", "mapping", ty]) => done(c.shared.state().mapping_create(ty, p)),
        (_, ["cluster", "mapping", ty, id]) => {
            let id = match path_param(c, "id", id) {
                Ok(id) => id,
                Err(e) => return Some(Outcome::Api(Err(e))),
            };
            match m {
                "GET" => value(c.shared.state().mapping_read(ty, id)),
                "PUT" => done(c.shared.state().mapping_update(ty, id, p)),
                "DELETE" => done(c.shared.state().mapping_delete(ty, id)),
                _ => return None,
            }
        }

        // ---- backup jobs ----
        ("GET", ["cluster", "backup"]) => ok(c.shared.state().backup_index()),
        ("POST", ["cluster", "backup"]) => done(c.shared.state().backup_create(p)),
        ("GET", ["cluster", "backup", id, "included_volumes"]) => {
            value(c.shared.state().backup_included(id))
        }
        (_, ["cluster", "backup", id]) => {
            let id = match path_param(c, "id", id) {
                Ok(id) => id,
                Err(e) => return Some(Outcome::Api(Err(e))),
            };
            match m {
                "GET" => value(c.shared.state().backup_read(id)),
                "PUT" => done(c.shared.state().backup_update(id, p)),
                "DELETE" => done(c.shared.state().backup_delete(id)),
                _ => return None,
            }
        }
        ("GET", ["cluster", "backup-info"]) => subdirs(&["not-backed-up"]),

        // ---- HA ----
        ("GET", ["cluster", "ha"]) => subdirs(&["groups", "resources", "rules", "status"]),
        ("GET", ["cluster", "ha", "status"]) => subdirs(&["current", "manager_status"]),
        ("GET", ["cluster", "ha", "status", "current"]) => ok(c.shared.state().ha_status()),
        ("GET", ["cluster", "ha", "status", "manager_status"]) => {
            ok(json!({"manager_status": {}, "node_status": {}, "lrm_status": {}}))
        }
        ("GET", ["cluster", "ha", "resources"]) => ok(c.shared.state().ha_resource_index(p)),
        ("POST", ["cluster", "ha", "resources"]) => done(c.shared.state().ha_resource_create(p)),
        (_, ["cluster", "ha", "resources", sid]) => {
            let sid = match path_param(c, "sid", sid) {
                Ok(s) => s,
                Err(e) => return Some(Outcome::Api(Err(e))),
            };
            match m {
                "GET" => value(c.shared.state().ha_resource_read(sid)),
                "PUT" => done(c.shared.state().ha_resource_update(sid, p)),
                "DELETE" => done(c.shared.state().ha_resource_delete(sid, p)),
                _ => return None,
            }
        }
        ("GET", ["cluster", "ha", "groups"]) => ok(c.shared.state().ha_group_index()),
        ("POST", ["cluster", "ha", "groups"]) => done(c.shared.state().ha_group_create(p)),
        (_, ["cluster", "ha", "groups", id]) => {
            let id = match path_param(c, "group", id) {
                Ok(id) => id,
                Err(e) => return Some(Outcome::Api(Err(e))),
            };
            match m {
                "GET" => value(c.shared.state().ha_group_read(id)),
                "PUT" => done(c.shared.state().ha_group_update(id, p)),
                "DELETE" => done(c.shared.state().ha_group_delete(id)),
                _ => return None,
            }
        }
        ("GET", ["cluster", "ha", "rules"]) => value(c.shared.state().ha_rule_index(p)),
        ("POST", ["cluster", "ha", "rules"]) => done(c.shared.state().ha_rule_create(p)),
        (_, ["cluster", "ha", "rules", id]) => {
            let id = match path_param(c, "rule", id) {
                Ok(id) => id,
                Err(e) => return Some(Outcome::Api(Err(e))),
            };
            match m {
                "GET" => value(c.shared.state().ha_rule_read(id)),
                "PUT" => done(c.shared.state().ha_rule_update(id, p)),
                "DELETE" => done(c.shared.state().ha_rule_delete(id)),
                _ => return None,
            }
        }
        _ => return None,
    })
}
