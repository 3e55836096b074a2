//! `/approvals` on the admin listener: list pending requests and approve or reject them over
//! HTTP. Every call needs `Authorization: Bearer <token>` with a token from `[admin]
//! token_file`, whose lines are `IDENTITY TOKEN` (one per approver; `#` comments): the
//! token says who approves, so self-approval and two-person rules hold over HTTP too.
//! Without a token file these endpoints answer 403: unauthenticated approval is impossible.
//!
//! - `GET /approvals`: `{"data": [ {id, identity, method, path, action, guests, rule,
//!   approvers, approved_by, status, created, expires, age_secs}, … ]}`
//! - `POST /approvals/<id>/approve`, `POST /approvals/<id>/reject[?reason=…]`:
//!   `{"data": {id, status, approved_by}}`; 403 with `{"message": …}` when refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};

use super::store::{RequestRecord, Status};
use super::{events, Approvals, StateError};
use crate::body::Body;

/// Shortest token accepted in the token file.
const TOKEN_MIN: usize = 16;

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut res = Response::new(Body::from(Bytes::from(v.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut res = json(
        status,
        serde_json::json!({"data": null, "message": message.into()}),
    );
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"pvegate approvals\""),
        );
    }
    res
}

/// The approver a bearer token belongs to, per the token file; `Err`: why not.
pub fn approver_for(token_file: &Path, bearer: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(token_file).map_err(|e| {
        format!(
            "cannot read [admin] token_file {}: {e}",
            token_file.display()
        )
    })?;
    let given = ring::digest::digest(&ring::digest::SHA256, bearer.as_bytes());
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((who, token)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let token = token.trim();
        if token.len() < TOKEN_MIN {
            continue;
        }
        let want = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        // Digests are compared, not tokens: timing can tell nothing about a token. Every
        // line is looked at, whatever matched before.
        if given.as_ref() == want.as_ref() && found.is_none() {
            found = Some(who.to_string());
        }
    }
    found.ok_or_else(|| "unknown token".to_string())
}

/// One request as listed.
pub fn listed(r: &RequestRecord, s: &Status) -> serde_json::Value {
    let approved_by = match s {
        Status::Pending { approved_by } => approved_by.clone(),
        Status::Approved { by, .. } => by.clone(),
        _ => Vec::new(),
    };
    serde_json::json!({
        "id": r.id, "identity": r.identity, "method": r.method, "path": r.path,
        "action": r.action, "guests": r.guests, "rule": r.rule, "approvers": r.approvers,
        "approved_by": approved_by, "status": s.word(), "created": r.created,
        "expires": r.expires,
        "age_secs": super::record::now().saturating_sub(r.created),
    })
}

/// Answers a request under `/approvals`.
pub async fn answer<B>(
    req: Request<B>,
    approvals: Arc<Approvals>,
    token_file: Option<PathBuf>,
) -> Response<Body> {
    let Some(token_file) = token_file else {
        return error(
            StatusCode::FORBIDDEN,
            "approvals over the admin listener are off: set [admin] token_file (lines of IDENTITY TOKEN)",
        );
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let Some(bearer) = bearer else {
        return error(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <token> with a token from [admin] token_file",
        );
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let reason = req.uri().query().and_then(form_urlencoded_reason);
    let job = tokio::task::spawn_blocking(move || {
        let who = match approver_for(&token_file, &bearer) {
            Ok(w) => w,
            Err(why) => {
                tracing::warn!(why, "admin /approvals: authentication failed");
                crate::logsink::flush_this_thread();
                return error(StatusCode::UNAUTHORIZED, "authentication failed");
            }
        };
        let res = route(&approvals, &method, &path, &who, reason.as_deref());
        // Blocking threads batch log lines but never park: hand them over now.
        crate::logsink::flush_this_thread();
        res
    });
    match tokio::time::timeout(std::time::Duration::from_secs(10), job).await {
        Ok(Ok(res)) => res,
        _ => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the approval state did not answer in time",
        ),
    }
}

/// `reason=` from a query string (percent-decoded, `+` as space).
fn form_urlencoded_reason(q: &str) -> Option<String> {
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "reason").then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn route(
    approvals: &Approvals,
    method: &Method,
    path: &str,
    who: &str,
    reason: Option<&str>,
) -> Response<Body> {
    let store = match approvals.store() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["approvals"]) => match store.pending() {
            Ok(list) => {
                let data: Vec<_> = list.iter().map(|(r, s)| listed(r, s)).collect();
                json(StatusCode::OK, serde_json::json!({ "data": data }))
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        (&Method::POST, ["approvals", id, verb @ ("approve" | "reject")]) => {
            let approve = *verb == "approve";
            match store.decide(id, who, approve, reason) {
                Ok((r, status)) => {
                    events::approval(
                        if approve { "approved" } else { "rejected" },
                        &r,
                        Some(who),
                        Some(&status),
                    );
                    json(
                        StatusCode::OK,
                        serde_json::json!({"data": listed(&r, &status)}),
                    )
                }
                Err(e @ StateError::Refused(_)) => {
                    events::count_approval("refused");
                    error(StatusCode::FORBIDDEN, e.to_string())
                }
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "GET /approvals, POST /approvals/<id>/approve, POST /approvals/<id>/reject",
        ),
    }
}
