//! Every response pvegate writes itself: policy denials, unreadable requests (400), and
//! upstream failures (502/504), each in the shape the request's API format expects.
//!
//! `json` (and every format but extjs/htmljs): the error status with a reason phrase that is
//! the message's first line, body `{"data":null,"message":"<text>\n"}`. `extjs`/`htmljs`: HTTP
//! 200, body `{"data":null,"message":"<text>\n","status":N,"success":0}` (what the web UI shows).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use hyper::ext::ReasonPhrase;

use crate::body::Body;
use crate::pve::ApiFormat;

/// A response in the error shape of `format` (`None`: outside `/api2`, answered like json).
pub fn error(format: Option<ApiFormat>, status: StatusCode, message: &str) -> Response<Body> {
    let first_line = message.lines().next().unwrap_or("").trim_end();
    let text = format!("{}\n", message.trim_end());
    let (http_status, body) = match format {
        Some(ApiFormat::Extjs | ApiFormat::Htmljs) => (
            StatusCode::OK,
            serde_json::json!({"data": null, "message": text, "status": status.as_u16(), "success": 0}),
        ),
        _ => (status, serde_json::json!({"data": null, "message": text})),
    };
    let mut res = Response::new(Body::from(Bytes::from(body.to_string())));
    *res.status_mut() = http_status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    if http_status != StatusCode::OK {
        res.extensions_mut().insert(reason_phrase(first_line));
    }
    res
}

/// A policy denial: 403 `Permission check failed (<message>)`.
pub fn deny(format: Option<ApiFormat>, message: &str) -> Response<Body> {
    error(
        format,
        StatusCode::FORBIDDEN,
        &format!("Permission check failed ({message})"),
    )
}

/// A request pvegate cannot read exactly as Proxmox would: 400.
pub fn bad_request(format: Option<ApiFormat>, detail: &str) -> Response<Body> {
    error(
        format,
        StatusCode::BAD_REQUEST,
        &format!("pvegate: refused unreadable request: {detail}"),
    )
}

/// A reason phrase made of the bytes HTTP allows (tab, space, visible ASCII, obs-text);
/// anything else becomes `?`.
pub fn reason_phrase(text: &str) -> ReasonPhrase {
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
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(res: Response<Body>) -> serde_json::Value {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn json_denial_carries_reason_phrase_and_message() {
        let res = deny(
            Some(ApiFormat::Json),
            "pvegate: VM 104 'doc1' is readonly: power.stop refused",
        );
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let reason = res
            .extensions()
            .get::<ReasonPhrase>()
            .unwrap()
            .as_bytes()
            .to_vec();
        assert_eq!(
            reason,
            b"Permission check failed (pvegate: VM 104 'doc1' is readonly: power.stop refused)"
        );
        let v = body_json(res).await;
        assert_eq!(v["data"], serde_json::Value::Null);
        assert_eq!(
            v["message"],
            "Permission check failed (pvegate: VM 104 'doc1' is readonly: power.stop refused)\n"
        );
    }

    #[tokio::test]
    async fn extjs_denial_is_http_200_with_success_0() {
        for f in [ApiFormat::Extjs, ApiFormat::Htmljs] {
            let res = deny(Some(f), "pvegate: no");
            assert_eq!(res.status(), StatusCode::OK);
            let v = body_json(res).await;
            assert_eq!(v["success"], 0);
            assert_eq!(v["status"], 403);
            assert_eq!(v["message"], "Permission check failed (pvegate: no)\n");
        }
    }

    #[test]
    fn reason_phrase_drops_control_bytes() {
        assert_eq!(reason_phrase("a\r\nb").as_bytes(), b"a??b");
    }
}
