//! Responses as pveproxy writes them: the API envelope per format, reason phrases, and the
//! bare errors of the HTTP layer.
//!
//! - `json`: `{"data":…}`; an error keeps its status and reads
//!   `{"data":null,"message":"…\n"}` (plus `errors` for parameter errors).
//! - `extjs`, `htmljs`: always HTTP 200; `success` is 1 or 0, an error adds `message` and
//!   `status` (`prepare_response_data` in pve-http-server).
//! - Every error's reason phrase is the first line of its message.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::ext::ReasonPhrase;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

/// The response body type of the sim.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// An API error: status, message (ending in `\n` like a Perl `die`), parameter errors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    pub errors: Option<Map<String, Value>>,
}

impl ApiError {
    /// An error with `status` and `message` (a final newline is added when missing).
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if !message.ends_with('\n') {
            message.push('\n');
        }
        ApiError {
            status,
            message,
            errors: None,
        }
    }

    /// A `die` in a handler: 500.
    pub fn die(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// `400 Parameter verification failed.` with one parameter error.
    pub fn param(name: &str, problem: impl Into<String>) -> Self {
        let mut errors = Map::new();
        errors.insert(name.to_owned(), Value::String(problem.into()));
        ApiError {
            status: 400,
            message: "Parameter verification failed.\n".into(),
            errors: Some(errors),
        }
    }

    /// `400 Parameter verification failed.` for a missing mandatory parameter.
    pub fn missing(name: &str) -> Self {
        Self::param(name, "property is missing and it is not optional")
    }
}

/// A successful API result: `data` plus optional top-level extras such as `total`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiOk {
    pub data: Value,
    pub extra: Vec<(&'static str, Value)>,
}

impl From<Value> for ApiOk {
    fn from(data: Value) -> Self {
        ApiOk {
            data,
            extra: Vec::new(),
        }
    }
}

/// What an API handler returns.
pub(crate) type ApiResult = Result<ApiOk, ApiError>;

/// The API formats pveproxy registers formatters for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `json` (and `spiceconfig`, `png`, `html`, which the sim answers like `json`).
    Json,
    /// `extjs`: errors as HTTP 200 with `success: 0`.
    Extjs,
    /// `htmljs`: like `extjs`, wrapped in an HTML page.
    Htmljs,
}

impl Format {
    /// The formatter for a format name; `None` for an unknown one (`xml`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" | "spiceconfig" | "png" | "html" => Some(Format::Json),
            "extjs" => Some(Format::Extjs),
            "htmljs" => Some(Format::Htmljs),
            _ => None,
        }
    }
}

/// The first line of `message`, usable as a reason phrase (invalid bytes become `?`).
pub(crate) fn reason_of(message: &str) -> String {
    let line = message.lines().next().unwrap_or("");
    line.chars()
        .map(|c| {
            if c == '\t' || (c >= ' ' && c != '\u{7f}') {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Sets status and reason phrase.
pub(crate) fn set_status(resp: &mut Response<Body>, status: u16, message: &str) {
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = reason_of(message);
    if !reason.is_empty() {
        if let Ok(rp) = ReasonPhrase::try_from(reason.into_bytes()) {
            resp.extensions_mut().insert(rp);
        }
    }
}

/// A response with `status`, the reason taken from `message` and `body`.
pub(crate) fn with_status(status: u16, message: &str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    set_status(&mut resp, status, message);
    resp
}

/// pveproxy's `$self->error(...)`: status, reason, and the message itself as the body.
pub(crate) fn raw_error(status: u16, message: &str) -> Response<Body> {
    with_status(status, message, full(message.to_owned()))
}

/// An error raised while authenticating: status and reason, empty body.
pub(crate) fn auth_error(status: u16, message: &str) -> Response<Body> {
    with_status(status, message, full(Bytes::new()))
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders an API result in `format`.
pub(crate) fn render(format: Format, result: ApiResult) -> Response<Body> {
    let (status, message, mut obj) = match result {
        Ok(ok) => {
            let mut obj = Map::new();
            obj.insert("data".into(), ok.data);
            for (k, v) in ok.extra {
                obj.insert(k.into(), v);
            }
            (200u16, String::from("OK"), obj)
        }
        Err(e) => {
            let mut obj = Map::new();
            obj.insert("data".into(), Value::Null);
            if let Some(errors) = e.errors {
                obj.insert("errors".into(), Value::Object(errors));
            }
            obj.insert("message".into(), Value::String(e.message.clone()));
            (e.status, e.message, obj)
        }
    };
    let (http_status, http_message) = match format {
        Format::Json => (status, message),
        Format::Extjs | Format::Htmljs => {
            let failed = status >= 400 || obj.contains_key("errors");
            if status >= 400 {
                obj.insert("status".into(), json!(status));
            }
            obj.insert("success".into(), json!(if failed { 0 } else { 1 }));
            (200, String::from("OK"))
        }
    };
    let text = Value::Object(obj).to_string();
    let (body, ct) = match format {
        Format::Htmljs => (
            format!("<html><body>{}</body></html>", html_escape(&text)),
            "text/html;charset=UTF-8",
        ),
        _ => (text, "application/json;charset=UTF-8"),
    };
    let mut resp = with_status(http_status, &http_message, full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(resp: Response<Body>) -> (u16, Option<String>, Value) {
        let status = resp.status().as_u16();
        let reason = resp
            .extensions()
            .get::<ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, reason, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn json_error_keeps_status_and_reason() {
        let r = render(
            Format::Json,
            Err(ApiError::die("VM 110 is running - destroy failed")),
        );
        let (s, reason, v) = body_of(r).await;
        assert_eq!(s, 500);
        assert_eq!(
            reason.as_deref(),
            Some("VM 110 is running - destroy failed")
        );
        assert_eq!(
            v,
            json!({"data": null, "message": "VM 110 is running - destroy failed\n"})
        );
    }

    #[tokio::test]
    async fn extjs_error_is_http_200() {
        let r = render(Format::Extjs, Err(ApiError::missing("newid")));
        let (s, _, v) = body_of(r).await;
        assert_eq!(s, 200);
        assert_eq!(v["success"], json!(0));
        assert_eq!(v["status"], json!(400));
        assert_eq!(
            v["errors"]["newid"],
            json!("property is missing and it is not optional")
        );
        let r = render(Format::Extjs, Ok(json!(null).into()));
        let (_, _, v) = body_of(r).await;
        assert_eq!(v, json!({"data": null, "success": 1}));
    }
}
