//! Every answer pvegate writes itself instead of Proxmox's: one type ([`Rejection`]: what kind
//! of refusal or failure, the request's API format and the detail) and one map from it to the
//! Proxmox-shaped response ([`Rejection::answer`]). Policy denials, requests pvegate cannot
//! read as pveproxy would, framing limits, body timeouts, upstream failures and the heads hyper
//! cannot parse ([`crate::early`]) all go through it, and the `pvegate: ` prefix that tells a
//! user who answered is written here only.
//!
//! The shapes, per API format (what pveproxy's own errors look like):
//! - `json` (and every format but extjs/htmljs, and everything outside `/api2`): the error
//!   status with the message's first line as reason phrase, body
//!   `{"data":null,"message":"<text>\n"}`;
//! - `extjs`/`htmljs`: HTTP 200 with `{"data":null,"message":"<text>\n","status":N,"success":0}`
//!   (what the web UI shows).
//!
//! A refusal of the policy reads like a failed Proxmox permission check, 403
//! `Permission check failed (pvegate: …)`, so every client shows it as one.

use std::borrow::Cow;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use hyper::ext::ReasonPhrase;

use crate::body::Body;
use crate::pve::framing::{Refusal, RefusalKind};
use crate::pve::ApiFormat;

/// What every message pvegate writes itself starts with (inside `Permission check failed (…)`
/// for a 403).
const PREFIX: &str = "pvegate: ";

/// Who refused or failed, and so which status and wording the answer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The policy refuses the request: 403.
    Denied,
    /// The request was read but pvegate cannot tell what it would touch: 403.
    Unjudgeable,
    /// The request cannot be read exactly as pveproxy would read it: 400.
    Unreadable,
    /// The request is refused as sent, with this status (501 method, 408 body timeout, 411,
    /// 413, 414, 431).
    Refused(StatusCode),
    /// The upstream gave no answer; pvegate answers with this status (502, 504, …).
    Upstream(StatusCode),
    /// pvegate itself is at fault: 500.
    Internal,
}

/// A request pvegate answers itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Who refused or failed.
    pub kind: Kind,
    /// The request's API format (`None`: outside `/api2` or not known yet; answered as json).
    pub format: Option<ApiFormat>,
    /// What went wrong and what to do, without the `pvegate: ` prefix.
    pub detail: String,
}

/// The parts of the answer to a [`Rejection`], for those who write the bytes themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status sent (200 for extjs/htmljs).
    pub status: StatusCode,
    /// The reason phrase (`None` with a 200).
    pub reason: Option<ReasonPhrase>,
    /// The JSON body.
    pub body: Bytes,
}

impl Rejection {
    /// A rejection of `kind` for a request in `format`.
    pub fn new(kind: Kind, format: Option<ApiFormat>, detail: impl Into<String>) -> Self {
        Rejection {
            kind,
            format,
            detail: detail.into(),
        }
    }

    /// A policy denial; `detail` is the policy's message.
    pub fn denied(format: Option<ApiFormat>, detail: impl Into<String>) -> Self {
        Rejection::new(Kind::Denied, format, detail)
    }

    /// The status the request is refused with, whatever the format.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Denied | Kind::Unjudgeable => StatusCode::FORBIDDEN,
            Kind::Unreadable => StatusCode::BAD_REQUEST,
            Kind::Refused(s) | Kind::Upstream(s) => s,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What pvegate says, prefixed, without the permission-check wrapper.
    fn said(&self) -> String {
        let d = &self.detail;
        match self.kind {
            Kind::Unjudgeable => {
                format!("{PREFIX}cannot judge this request, so it is refused: {d}")
            }
            Kind::Unreadable => format!("{PREFIX}refused unreadable request: {d}"),
            _ => format!("{PREFIX}{d}"),
        }
    }

    /// The message the client gets.
    pub fn text(&self) -> String {
        match self.kind {
            Kind::Denied | Kind::Unjudgeable => {
                format!("Permission check failed ({})", self.said())
            }
            _ => self.said(),
        }
    }

    /// The reason the audit line and `pvegate check` give: for a 403 what pvegate says to the
    /// client inside the permission-check wrapper, otherwise the detail alone (the status
    /// says the rest).
    pub fn reason(&self) -> Cow<'_, str> {
        match self.kind {
            Kind::Denied | Kind::Unjudgeable => Cow::Owned(self.said()),
            _ => Cow::Borrowed(&self.detail),
        }
    }

    /// The answer in the request format's shape (see the module docs).
    pub fn answer(&self) -> Answer {
        let status = self.status();
        let text = self.text();
        let message = format!("{}\n", text.trim_end());
        let (http_status, body) = match self.format {
            Some(ApiFormat::Extjs | ApiFormat::Htmljs) => (
                StatusCode::OK,
                serde_json::json!({"data": null, "message": message, "status": status.as_u16(), "success": 0}),
            ),
            _ => (
                status,
                serde_json::json!({"data": null, "message": message}),
            ),
        };
        let reason = (http_status != StatusCode::OK)
            .then(|| reason_phrase(text.lines().next().unwrap_or("").trim_end()));
        Answer {
            status: http_status,
            reason,
            body: Bytes::from(body.to_string()),
        }
    }

    /// The response a client gets.
    pub fn response(&self) -> Response<Body> {
        let Answer {
            status,
            reason,
            body,
        } = self.answer();
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        if let Some(reason) = reason {
            res.extensions_mut().insert(reason);
        }
        res
    }
}

impl From<Refusal> for Rejection {
    fn from(r: Refusal) -> Self {
        let kind = match &r.kind {
            RefusalKind::Malformed(_) => Kind::Unreadable,
            RefusalKind::Unjudgeable(_) => Kind::Unjudgeable,
            RefusalKind::Method(_) => Kind::Refused(StatusCode::NOT_IMPLEMENTED),
            RefusalKind::LengthRequired => Kind::Refused(StatusCode::LENGTH_REQUIRED),
            RefusalKind::TooLarge => Kind::Refused(StatusCode::PAYLOAD_TOO_LARGE),
        };
        let detail = match r.kind {
            RefusalKind::Malformed(m) | RefusalKind::Unjudgeable(m) => m,
            other => other.to_string(),
        };
        Rejection::new(kind, r.format, detail)
    }
}

/// A reason phrase made of the bytes HTTP allows (tab, space, visible ASCII, obs-text);
/// anything else becomes `?`.
fn reason_phrase(text: &str) -> ReasonPhrase {
    let cleaned: Vec<u8> = text
        .bytes()
        .map(|b| match b {
            b'\t' | b' '..=b'~' | 0x80..=0xff => b,
            _ => b'?',
        })
        .collect();
    ReasonPhrase::try_from(cleaned).unwrap_or_else(|_| ReasonPhrase::from_static(b"Error"))
}

#[cfg(test)]
mod tests;
