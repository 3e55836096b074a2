//! The shapes of pvegate's own answers, per kind and API format.

use super::*;
use http_body_util::BodyExt;

async fn body_json(res: Response<Body>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn json_denial_carries_reason_phrase_and_message() {
    let res = Rejection::denied(
        Some(ApiFormat::Json),
        "VM 104 'doc1' is readonly: power.stop refused",
    )
    .response();
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
        let res = Rejection::denied(Some(f), "no").response();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.extensions().get::<ReasonPhrase>().is_none());
        let v = body_json(res).await;
        assert_eq!(v["success"], 0);
        assert_eq!(v["status"], 403);
        assert_eq!(v["message"], "Permission check failed (pvegate: no)\n");
    }
}

#[test]
fn each_kind_has_its_status_and_wording() {
    let cases = [
        (
            Kind::Unreadable,
            400,
            "pvegate: refused unreadable request: x",
            "x",
        ),
        (
            Kind::Unjudgeable,
            403,
            "Permission check failed (pvegate: cannot judge this request, so it is refused: x)",
            "pvegate: cannot judge this request, so it is refused: x",
        ),
        (
            Kind::Refused(StatusCode::LENGTH_REQUIRED),
            411,
            "pvegate: x",
            "x",
        ),
        (
            Kind::Upstream(StatusCode::GATEWAY_TIMEOUT),
            504,
            "pvegate: x",
            "x",
        ),
        (Kind::Internal, 500, "pvegate: x", "x"),
    ];
    for (kind, status, text, reason) in cases {
        let r = Rejection::new(kind, None, "x");
        assert_eq!(r.status().as_u16(), status, "{kind:?}");
        assert_eq!(r.text(), text, "{kind:?}");
        assert_eq!(r.reason(), reason, "{kind:?}");
        let a = r.answer();
        assert_eq!(a.status.as_u16(), status);
        assert_eq!(a.reason.unwrap().as_bytes(), text.as_bytes());
        assert_eq!(
            a.body,
            Bytes::from(format!(r#"{{"data":null,"message":"{text}\n"}}"#))
        );
    }
}

#[test]
fn framing_refusals_keep_their_status_and_detail() {
    let r = Rejection::from(Refusal {
        format: Some(ApiFormat::Json),
        kind: RefusalKind::TooLarge,
    });
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.text(),
        "pvegate: request body over 512 KiB (Proxmox's limit for API parameters)"
    );
    let r = Rejection::from(Refusal {
        format: None,
        kind: RefusalKind::Malformed("bad".into()),
    });
    assert_eq!(
        (r.status(), r.text().as_str()),
        (
            StatusCode::BAD_REQUEST,
            "pvegate: refused unreadable request: bad"
        )
    );
}

#[test]
fn reason_phrase_drops_control_bytes() {
    assert_eq!(reason_phrase("a\r\nb").as_bytes(), b"a??b");
}

#[test]
fn reason_phrase_is_the_first_line() {
    let a = Rejection::new(Kind::Internal, None, "one\ntwo").answer();
    assert_eq!(a.reason.unwrap().as_bytes(), b"pvegate: one");
}
