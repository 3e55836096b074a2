//! Request parameters merged the way pveproxy's `extract_params` merges them: the body
//! (urlencoded, or JSON when the content type is exactly `application/json`) first, then
//! the query string, whose keys overwrite the body's — a key without a value overwrites with
//! *absent*.

use std::collections::BTreeMap;

use percent_encoding::percent_decode;
use serde_json::Value;

/// Parameter name → value; `None` is Perl's `undef` (a key without a value).
pub(crate) type Params = BTreeMap<String, Option<String>>;

/// Convenience accessors on [`Params`].
pub(crate) trait ParamsExt {
    /// The value of `key` when present and defined.
    fn str(&self, key: &str) -> Option<&str>;
    /// Whether `key` is a true boolean (`1`, `true`, `yes`, `on`).
    fn flag(&self, key: &str) -> bool;
}

impl ParamsExt for Params {
    fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.as_deref())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(
            self.str(key).map(str::to_ascii_lowercase).as_deref(),
            Some("1" | "true" | "yes" | "on")
        )
    }
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = s
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&plus).collect()
}

/// `decode_urlencoded`: pairs split on `&` and `;`, each on `=` keeping the first two
/// fields (Perl's `split` also drops an empty value, so `a=` is `a` → undef); a repeated
/// key's values are joined with `,`.
pub(crate) fn decode_urlencoded(data: &[u8], into: &mut Params) {
    for kv in data.split(|&b| b == b'&' || b == b';') {
        if kv.is_empty() {
            continue;
        }
        let mut fields = kv.split(|&b| b == b'=');
        let k = fields.next().unwrap_or(&[]);
        let v = fields.next();
        let key = String::from_utf8_lossy(&unescape(k)).into_owned();
        let value = v.map(|v| String::from_utf8_lossy(&unescape(v)).into_owned());
        match (into.get_mut(&key), value) {
            (Some(Some(old)), Some(v)) => {
                old.push(',');
                old.push_str(&v);
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// How Perl stringifies a JSON value: numbers without a useless fraction (`104.0` → `104`),
/// booleans as `1`/`0`, `null` as absent, arrays and objects as JSON text.
fn json_scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(if let Some(i) = n.as_i64() {
            i.to_string()
        } else if let Some(u) = n.as_u64() {
            u.to_string()
        } else {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{f:.0}")
            } else {
                f.to_string()
            }
        }),
        other => Some(other.to_string()),
    }
}

/// The media type of a `Content-Type` value (`parse_content_type`: split on `;` or `,`),
/// and its `boundary` parameter.
pub(crate) fn parse_content_type(ct: &str) -> (String, Option<String>) {
    let mut parts = ct.split([';', ',']).map(str::trim);
    let media = parts.next().unwrap_or("").to_owned();
    let boundary = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim() == "boundary").then(|| v.trim().trim_matches('"').to_owned())
        })
        .next();
    (media, boundary)
}

/// Merges body and query parameters for `method`.
pub(crate) fn extract(
    method: &str,
    content_type: Option<&str>,
    body: &[u8],
    query: Option<&str>,
) -> Result<Params, String> {
    let mut params = Params::new();
    if method == "POST" || method == "PUT" {
        let json = content_type.is_some_and(|ct| parse_content_type(ct).0 == "application/json");
        if json {
            let v: Value =
                serde_json::from_slice(body).map_err(|e| format!("malformed JSON string: {e}"))?;
            let Value::Object(map) = v else {
                return Err("Not a HASH reference".into());
            };
            for (k, v) in &map {
                if let Some(s) = json_scalar(v) {
                    params.insert(k.clone(), Some(s));
                }
            }
        } else {
            decode_urlencoded(body, &mut params);
        }
    }
    if let Some(q) = query {
        let mut qp = Params::new();
        decode_urlencoded(q.as_bytes(), &mut qp);
        params.extend(qp);
    }
    params.remove("_dc");
    Ok(params)
}

/// Splits a list value (`vms`, `delete`) on `,`, `;` and whitespace.
pub(crate) fn split_list(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c == ';' || c == '\0' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_like_perl() {
        let mut p = Params::new();
        decode_urlencoded(b"a=b=c;vms=100&vms=104&x&e=&s=a+b%21", &mut p);
        assert_eq!(p.str("a"), Some("b"));
        assert_eq!(p.str("vms"), Some("100,104"));
        assert_eq!(p.get("x"), Some(&None));
        assert_eq!(p.str("e"), Some(""), "`e=` is the empty string, not undef");
        assert_eq!(p.str("s"), Some("a b!"));
    }

    #[test]
    fn query_overrides_body_even_with_absent() {
        let p = extract("POST", None, b"vms=110&name=x", Some("vms")).unwrap();
        assert_eq!(p.get("vms"), Some(&None));
        assert_eq!(p.str("name"), Some("x"));
        let p = extract("GET", None, b"ignored=1", Some("a=1&_dc=5")).unwrap();
        assert_eq!(p.str("a"), Some("1"));
        assert!(!p.contains_key("ignored") && !p.contains_key("_dc"));
    }

    #[test]
    fn json_bodies_stringify_like_perl() {
        let p = extract(
            "POST",
            Some("application/json; charset=UTF-8"),
            br#"{"vmid":104.0,"b":1.04e2,"t":true,"n":null,"s":"x"}"#,
            None,
        )
        .unwrap();
        assert_eq!(p.str("vmid"), Some("104"));
        assert_eq!(p.str("b"), Some("104"));
        assert_eq!(p.str("t"), Some("1"));
        assert!(!p.contains_key("n"));
        assert!(extract("POST", Some("application/json"), b"[1]", None).is_err());
        // Not exactly application/json: urlencoded.
        let p = extract("POST", Some("Application/JSON"), b"a=1", None).unwrap();
        assert_eq!(p.str("a"), Some("1"));
    }

    #[test]
    fn content_type_and_lists() {
        assert_eq!(
            parse_content_type("multipart/form-data; boundary=\"xyz\""),
            ("multipart/form-data".into(), Some("xyz".into()))
        );
        assert_eq!(
            split_list("100,104;105 106"),
            vec!["100", "104", "105", "106"]
        );
    }
}
