//! One request, in pveproxy's order: record it, check method and framing, authenticate
//! `/api2` calls (ticket or token, CSRF), check the body, parse parameters, then hand it
//! to the API router or the static pages.
//!
//! Mirrors `unshift_read_header` / `authenticate_and_handle_request` of pve-http-server's
//! `AnyEvent.pm`, except that the sim reads every body to the end first (so the recorder
//! sees it) where pveproxy would answer a refused one before reading it.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH,
    CONTENT_TYPE,
};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response};
use percent_encoding::percent_decode_str;

use super::api::{self, Call};
use super::auth::{credential, now, verify_token, Credential, Identity};
use super::params::{self, parse_content_type};
use super::record::{BodyCapture, CapturedBody, Recorded};
use super::reply::{auth_error, full, raw_error, render, Body, Format};
use super::{gzip, upload, web, ws, Shared};

/// pveproxy's `$limit_max_post`.
pub(crate) const LIMIT_MAX_POST: u64 = 512 * 1024;

/// Header values joined with `", "`, as HTTP::Headers returns repeated headers.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

async fn read_body(body: Incoming) -> (CapturedBody, bool) {
    let mut capture = BodyCapture::new();
    let mut body = body;
    let mut failed = false;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    capture.push(data);
                }
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    (capture.finish(), failed)
}

/// Handles one request on a connection from `peer`.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let target = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let on_upgrade = ws::wants_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let accept_gzip = gzip::accepted(joined(req.headers(), "accept-encoding").as_deref());
    let (parts, body) = req.into_parts();
    let (captured, failed) = read_body(body).await;
    shared.record(Recorded {
        method: method.clone(),
        target,
        headers,
        body: captured.kept.clone(),
        body_len: captured.len,
        body_sha256: captured.sha256.clone(),
        peer,
        node: String::new(),
    });
    let mut resp = if failed {
        raw_error(400, "bad request")
    } else {
        respond(&shared, &method, &parts, captured, on_upgrade).await
    };
    finish(&mut resp);
    if accept_gzip {
        resp = compress(resp).await;
    }
    resp
}

/// pveproxy's response compression: content known up front, longer than 1 KiB, not an
/// informational/no-content answer, not already encoded.
async fn compress(resp: Response<Body>) -> Response<Body> {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let eligible = !matches!(status, 100..=199 | 204 | 304)
        && !resp.headers().contains_key(CONTENT_ENCODING)
        && gzip::compressible(ct)
        && resp
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n > gzip::MIN_LEN as u64);
    if !eligible {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, full(bytes::Bytes::new()));
    };
    let packed = gzip::encode(&collected.to_bytes());
    parts
        .headers
        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, full(packed))
}

/// Headers pveproxy puts on every response; `Connection: close` from status 400 up.
fn finish(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("pve-api-daemon/3.0"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=0"));
        h.insert("pragma", HeaderValue::from_static("no-cache"));
    }
    if resp.status().as_u16() >= 400 {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
}

/// `$split_abs_uri`: `m/^\/api2\/+([a-z][a-z0-9]+)(\/.*)?$/` → (format, rel_uri).
pub(crate) fn split_abs_uri(path: &str) -> Option<(&str, &str)> {
    let p = path.strip_prefix("/api2")?;
    let p2 = p.trim_start_matches('/');
    if p2.len() == p.len() {
        return None;
    }
    let bytes = p2.as_bytes();
    if !bytes.first().is_some_and(u8::is_ascii_lowercase) {
        return None;
    }
    let flen = bytes
        .iter()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        .count();
    if flen < 2 {
        return None;
    }
    let (format, rest) = p2.split_at(flen);
    // `$` also matches before a final newline; `.` never matches one.
    let rest = rest.strip_suffix('\n').unwrap_or(rest);
    if rest.contains('\n') || !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some((format, if rest.is_empty() { "/" } else { rest }))
}

/// The calls pveproxy answers without authentication (exact match on the decoded rel_uri).
fn anonymous(method: &str, rel: &str) -> bool {
    matches!(
        (method, rel),
        ("GET", "/access/domains")
            | ("GET" | "POST", "/access/ticket")
            | ("POST", "/access/vncticket")
            | ("POST", "/access/openid/login")
            | ("POST", "/access/openid/auth-url")
    )
}

/// `m|^/nodes/([^/]+)/storage/([^/]+)/upload$|` on the undecorated rel_uri.
fn is_upload(method: &str, rel: &str) -> bool {
    if method != "POST" {
        return false;
    }
    let parts: Vec<&str> = rel.split('/').collect();
    matches!(parts.as_slice(), ["", "nodes", n, "storage", s, "upload"] if !n.is_empty() && !s.is_empty())
}

fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    method: &str,
    upload: bool,
) -> Result<Identity, (u16, String)> {
    let cookie = joined(headers, "cookie");
    let authorization = joined(headers, "authorization");
    match credential(cookie.as_deref(), authorization.as_deref()) {
        Credential::None => Err((401, "No ticket".into())),
        Credential::Token(t) => verify_token(&t, &shared.tokens).map_err(|e| (401, e)),
        Credential::Ticket(t) => {
            let now = now();
            let Some(user) = shared.keys.verify_ticket(&t, now) else {
                return Err((401, "permission denied - invalid PVE ticket".into()));
            };
            if method != "GET" && !upload {
                let token = joined(headers, "csrfpreventiontoken").unwrap_or_default();
                if !shared.keys.verify_csrf(&user, &token, now) {
                    return Err((401, "Permission denied - invalid csrf token".into()));
                }
            }
            Ok(Identity { user, token: None })
        }
    }
}

async fn respond(
    shared: &Shared,
    method: &str,
    parts: &hyper::http::request::Parts,
    body: CapturedBody,
    on_upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    let headers = &parts.headers;
    if !matches!(method, "GET" | "POST" | "PUT" | "DELETE") {
        return raw_error(501, &format!("method '{method}' not available"));
    }
    if let Some(te) = joined(headers, "transfer-encoding") {
        return if te.eq_ignore_ascii_case("chunked") {
            raw_error(501, "chunked transfer encoding not supported")
        } else {
            raw_error(501, &format!("Unknown transfer encoding '{te}'"))
        };
    }
    let target = parts.uri.to_string();
    if target
        .split('/')
        .next()
        .is_some_and(|head| head.contains('@'))
    {
        return raw_error(400, "invalid url");
    }
    let path = percent_decode_str(parts.uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let query = parts.uri.query();

    let api = path.starts_with("/api2");
    let mut identity = None;
    let mut upload = false;
    let mut api_target = None;
    if api {
        let Some((format, rel)) = split_abs_uri(&path) else {
            return raw_error(501, "no such uri");
        };
        upload = is_upload(method, rel);
        if !anonymous(method, rel) {
            match authenticate(shared, headers, method, upload) {
                Ok(id) => identity = Some(id),
                Err((status, msg)) => return auth_error(status, &msg),
            }
        }
        api_target = Some((format.to_owned(), rel.to_owned()));
    }

    let len = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(body.len);
    let ctype = joined(headers, "content-type");
    let mut upload_info = None;
    if len > 0 {
        if !(method == "PUT" || method == "POST") {
            return raw_error(501, &format!("Unexpected content for method '{method}'"));
        }
        let (ct, boundary) = ctype.as_deref().map(parse_content_type).unwrap_or_default();
        if upload {
            let Some(boundary) = boundary.filter(|_| ct == "multipart/form-data") else {
                return raw_error(
                    501,
                    &format!(
                        "upload 'Content-Type '{}' not implemented",
                        ctype.unwrap_or_default()
                    ),
                );
            };
            match upload::parse(&body.kept, &body.tail, body.len, &boundary) {
                Ok(u) => upload_info = Some(u),
                Err(e) => return raw_error(501, &e),
            }
        } else if len > LIMIT_MAX_POST {
            return raw_error(501, "for data too large");
        } else if !(ct.is_empty()
            || ct == "application/x-www-form-urlencoded"
            || ct == "application/json")
        {
            return raw_error(
                506,
                &format!(
                    "upload 'Content-Type '{}' not implemented",
                    ctype.unwrap_or_default()
                ),
            );
        }
    }

    let Some((format_name, rel)) = api_target else {
        let cookie = joined(headers, "cookie");
        return web::serve(shared, method, &path, query, cookie.as_deref());
    };
    let Some(format) = Format::from_name(&format_name) else {
        return raw_error(501, &format!("no formatter for uri {rel}, {format_name}"));
    };

    let params = if let Some(u) = &upload_info {
        let mut p = params::Params::new();
        if let Some(q) = query {
            params::decode_urlencoded(q.as_bytes(), &mut p);
        }
        if p.contains_key("tmpfilename") {
            return raw_error(
                501,
                "'tmpfilename' query parameter is not allowed for file uploads",
            );
        }
        for (k, v) in &u.fields {
            p.insert(k.clone(), v.clone());
        }
        p.insert("filename".into(), Some(u.filename.clone()));
        p
    } else {
        match params::extract(method, ctype.as_deref(), &body.kept, query) {
            Ok(p) => p,
            Err(e) => return raw_error(501, &e),
        }
    };

    let call = Call {
        shared,
        node: shared.node.clone(),
        method,
        rel: &rel,
        params,
        identity,
        upload: upload_info,
        headers,
        on_upgrade,
    };
    match api::route(call) {
        api::Outcome::Api(result) => render(format, result),
        api::Outcome::Raw(resp) => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_uri_like_pveproxy() {
        assert_eq!(split_abs_uri("/api2/json/nodes"), Some(("json", "/nodes")));
        assert_eq!(split_abs_uri("//api2/json"), None);
        assert_eq!(
            split_abs_uri("/api2//json//nodes/"),
            Some(("json", "//nodes/"))
        );
        assert_eq!(split_abs_uri("/api2/json"), Some(("json", "/")));
        assert_eq!(split_abs_uri("/api2/JSON/nodes"), None);
        assert_eq!(split_abs_uri("/api2/"), None);
        assert_eq!(split_abs_uri("/api2"), None);
        assert_eq!(split_abs_uri("/api2/j/x"), None);
        assert_eq!(
            split_abs_uri("/api2/json/x/stop\n"),
            Some(("json", "/x/stop"))
        );
        assert_eq!(split_abs_uri("/api2/json/x\n/stop"), None);
        assert_eq!(split_abs_uri("/api2/xml/x"), Some(("xml", "/x")));
    }

    #[test]
    fn upload_and_anonymous_paths() {
        assert!(is_upload("POST", "/nodes/pve/storage/local/upload"));
        assert!(!is_upload("POST", "//nodes/pve/storage/local/upload"));
        assert!(!is_upload("PUT", "/nodes/pve/storage/local/upload"));
        assert!(anonymous("POST", "/access/ticket"));
        assert!(!anonymous("POST", "//access/ticket"));
        assert!(!anonymous("DELETE", "/access/ticket"));
    }
}
