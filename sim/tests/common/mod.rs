//! Helpers for the sim's own tests: API calls with the demo token over real sockets.
#![allow(dead_code)]

use serde_json::Value;

/// The demo token's `Authorization` value.
pub const TOKEN: &str = "PVEAPIToken=root@pam!tofu=11111111-2222-3333-4444-555555555555";

/// A client that trusts anything (tests that check TLS build their own).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

/// One API call with the demo token: (status, whole JSON body).
pub async fn call(base: &str, method: &str, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("{base}/api2/json{path}");
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(m, &url).header("authorization", TOKEN);
    if !form.is_empty() {
        let body: String = form_body(form);
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A JSON-bodied call (as cv4pve and Terraform send them).
pub async fn call_json(base: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let url = format!("{base}/api2/json{path}");
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let resp = client()
        .request(m, &url)
        .header("authorization", TOKEN)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `GET` returning `data`, asserting 200.
pub async fn get(base: &str, path: &str) -> Value {
    let (status, v) = call(base, "GET", path, &[]).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v["data"].clone()
}

/// A call that must succeed; returns `data`.
pub async fn must(base: &str, method: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let (status, v) = call(base, method, path, form).await;
    assert_eq!(status, 200, "{method} {path}: {v}");
    v["data"].clone()
}

fn form_body(form: &[(&str, &str)]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for (k, v) in form {
        if !s.is_empty() {
            s.push('&');
        }
        let _ = write!(s, "{}={}", enc(k), enc(v));
    }
    s
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The entry of `list` whose `key` is `value`.
pub fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| match &e[key] {
        Value::String(s) => s == value,
        Value::Number(n) => n.to_string() == value,
        _ => false,
    })
}
