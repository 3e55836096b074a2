//! The pages pveproxy serves outside `/api2`: the index (which embeds a CSRF token for a
//! valid `PVEAuthCookie`, like `get_index` in pve-manager) and static files.
//!
//! Built-in files are tiny stand-ins; tests and demos add their own with
//! `SimConfig::static_files` or `SimHandle::add_static_file`. Anything unknown gets pveproxy's
//! `501 no such file '<path>'`; only `GET` is served.

use std::collections::BTreeMap;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;

use super::auth::{extract_auth_value, now};
use super::params::{decode_urlencoded, Params, ParamsExt};
use super::reply::{full, raw_error, Body};
use super::Shared;

/// A static file: content type and bytes.
pub(crate) type StaticFiles = BTreeMap<String, (String, Bytes)>;

/// The files every sim serves.
pub(crate) fn builtin() -> StaticFiles {
    let mut m = StaticFiles::new();
    let mut add = |path: &str, ct: &str, body: &str| {
        m.insert(
            path.to_owned(),
            (ct.to_owned(), Bytes::from(body.to_owned())),
        );
    };
    let js = "application/javascript";
    add(
        "/pve2/js/pvemanagerlib.js",
        js,
        "// pvegate sim: stand-in for the Proxmox VE web UI\n\
         window.PVE = window.PVE || { sim: true };\n",
    );
    add(
        "/pve2/ext6/ext-all.js",
        js,
        "// pvegate sim: ExtJS stand-in\nwindow.Ext = window.Ext || {};\n",
    );
    add(
        "/proxmoxlib.js",
        js,
        "// pvegate sim: proxmox widget toolkit stand-in\nwindow.Proxmox = window.Proxmox || {};\n",
    );
    add(
        "/pve2/css/ext6-pve.css",
        "text/css",
        "/* pvegate sim */\nbody { font-family: sans-serif; }\n",
    );
    add("/pwt/css/ext6-pmx.css", "text/css", "/* pvegate sim */\n");
    add("/novnc/app.js", js, "// pvegate sim: noVNC stand-in\n");
    add(
        "/xtermjs/xterm.js",
        js,
        "// pvegate sim: xterm.js stand-in\n",
    );
    add(
        "/xtermjs/main.js",
        js,
        "// pvegate sim: xterm.js console stand-in\n",
    );
    m
}

fn js_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `GET /`: the index page, with `Proxmox.CSRFPreventionToken` when the cookie is valid.
fn index(shared: &Shared, cookie: Option<&str>, query: Option<&str>) -> Response<Body> {
    let mut q = Params::new();
    if let Some(query) = query {
        decode_urlencoded(query.as_bytes(), &mut q);
    }
    let user = cookie
        .and_then(|c| extract_auth_value(c, "PVEAuthCookie"))
        .and_then(|t| shared.keys.verify_ticket(&t, now()));
    let (user_js, csrf_js) = match &user {
        Some(u) => (js_string(u), js_string(&shared.keys.csrf(u, now()))),
        None => ("''".to_owned(), "false".to_owned()),
    };
    let console = q.str("console").map(|c| {
        let kind = if q.flag("xtermjs") {
            "xterm.js"
        } else {
            "noVNC"
        };
        format!(
            "<p id=\"console\" data-console={} data-vmid={}>{kind} console</p>\n\
             <script src=\"/{}\"></script>\n",
            js_string(c),
            js_string(q.str("vmid").unwrap_or("")),
            if q.flag("xtermjs") {
                "xtermjs/main.js"
            } else {
                "novnc/app.js"
            }
        )
    });
    let html = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{node} - Proxmox Virtual Environment</title>\n\
         <link rel=\"stylesheet\" type=\"text/css\" href=\"/pve2/css/ext6-pve.css\" />\n\
         <script type=\"text/javascript\">\n\
         Proxmox = {{\n  Setup: {{ auth_cookie_name: 'PVEAuthCookie' }},\n  defaultLang: 'en',\n  \
         NodeName: {node_js},\n  UserName: {user_js},\n  CSRFPreventionToken: {csrf_js}\n}};\n\
         </script>\n\
         <script type=\"text/javascript\" src=\"/proxmoxlib.js?ver=5.0.0\"></script>\n\
         <script type=\"text/javascript\" src=\"/pve2/js/pvemanagerlib.js?ver=9.1.1\"></script>\n\
         </head>\n<body>\n{console}</body>\n</html>\n",
        node = shared.node,
        node_js = js_string(&shared.node),
        console = console.unwrap_or_default(),
    );
    let mut resp = Response::new(full(html));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// Serves a non-API request.
pub(crate) fn serve(
    shared: &Shared,
    method: &str,
    path: &str,
    query: Option<&str>,
    cookie: Option<&str>,
) -> Response<Body> {
    if method == "GET" {
        if path == "/" {
            return index(shared, cookie, query);
        }
        let file = shared.static_files().get(path).cloned();
        if let Some((ct, body)) = file {
            let mut resp = Response::new(full(body));
            if let Ok(v) = HeaderValue::from_str(&ct) {
                resp.headers_mut().insert(CONTENT_TYPE, v);
            }
            return resp;
        }
    }
    raw_error(501, &format!("no such file '{path}'"))
}
