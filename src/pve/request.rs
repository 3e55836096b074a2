//! How pveproxy reads a request: the request-target (API format and path segments) and the
//! parameters (query string, form or JSON body), turned into typed values exactly as
//! pveproxy's Perl code does, and refused wherever pveproxy could read them differently.
//!
//! The Perl this mirrors is pve-http-server `src/PVE/APIServer/AnyEvent.pm`
//! (`push_request_header`, `process_header`, `$split_abs_uri`, `decode_urlencoded`,
//! `extract_params`, `parse_content_type`, `proxy_request`) together with URI.pm,
//! URI::Escape, Encode and JSON::XS. `docs/pveproxy.md#request-line` to `#upload` hold the
//! citations; every rule below was also checked against those Perl modules.
//!
//! Where pvegate deliberately refuses rather than mirrors, the function docs say so under
//! "Refused".
//!
//! This module holds what the readers share: the parameter types ([`Params`], [`ParamValue`]),
//! the one error type ([`RequestError`]), Perl's byte rules (`uri_unescape`, Perl's `\s` and
//! truthiness) and [`parse_body`]. Each reader has a file of its own, re-exported here:
//! `request/target.rs` (the request-target), `request/content_type.rs` (the Content-Type of a
//! body), `request/form.rs` (query strings and form bodies) and `request/json.rs` (JSON
//! bodies).

mod content_type;
mod form;
mod json;
mod target;

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use content_type::{body_kind, BodyKind};
pub use form::{parse_form_body, parse_urlencoded};
pub use json::parse_json;
pub use target::{parse_target, ApiFormat, Segment, Target};

/// One parameter value after pveproxy's merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// Key present without a value (`?vms`) or JSON `null`: pveproxy's `undef`.
    Absent,
    /// A single value (`vms=100`, JSON `"100"`, `100` or `100.0`).
    One(String),
    /// A repeated key (`vms=100&vms=104`, also with `;`) or a JSON array, in order.
    Many(Vec<String>),
}

impl ParamValue {
    /// The values as a slice: empty for `Absent`, one element for `One`.
    ///
    /// Note that an empty slice does not mean absent: `Many(vec![])` (a JSON `[]`) is a
    /// defined, empty list for Proxmox. Use [`ParamValue::is_absent`] for that question.
    pub fn values(&self) -> &[String] {
        match self {
            ParamValue::Absent => &[],
            ParamValue::One(v) => std::slice::from_ref(v),
            ParamValue::Many(v) => v,
        }
    }

    /// True for `Absent` (pveproxy's `undef`).
    pub fn is_absent(&self) -> bool {
        matches!(self, ParamValue::Absent)
    }

    /// The value if this is `One`.
    pub fn as_one(&self) -> Option<&str> {
        match self {
            ParamValue::One(v) => Some(v),
            _ => None,
        }
    }
}

/// Merged request parameters (query over body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub map: BTreeMap<String, ParamValue>,
}

impl Params {
    /// The parameters pveproxy hands to the API handler: the body parameters, overwritten key
    /// by key by the query parameters (an `Absent` query value included: `?vms` wipes a body
    /// `vms=100`), then without `_dc` (the cache buster pveproxy deletes).
    ///
    /// Mirrors `extract_params` followed by `delete $params->{_dc}` in `handle_api2_request`.
    /// For GET and DELETE pass `Params::default()` as the body: pveproxy reads no body for
    /// them (and answers 501 to one with content).
    pub fn merge(body: Params, query: Params) -> Params {
        let mut map = body.map;
        map.extend(query.map);
        map.remove("_dc");
        Params { map }
    }

    /// The value of `key`, if the key is present (`Absent` counts as present).
    pub fn get(&self, key: &str) -> Option<&ParamValue> {
        self.map.get(key)
    }

    /// The value of `key` if it is exactly one value (`One`).
    pub fn one(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(ParamValue::as_one)
    }

    /// True if `key` is present, even as `Absent`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// True if `key` is present with a defined value (`One` or `Many`), as Perl's `defined`.
    pub fn is_defined(&self, key: &str) -> bool {
        matches!(self.map.get(key), Some(v) if !v.is_absent())
    }

    /// All parameters in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = (&'a String, &'a ParamValue);
    type IntoIter = std::collections::btree_map::Iter<'a, String, ParamValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

/// A request that pveproxy would reject, or could read differently than pvegate. The message
/// is meant for the client (it is sent in a 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// A byte outside visible ASCII in the raw request-target.
    #[error("request-target contains a space, a control character or a non-ASCII byte")]
    TargetCharacter,
    /// Neither origin-form (`/...`) nor absolute-form (`http(s)://host/...`).
    #[error("request-target must be a path starting with '/' or an absolute http(s):// URL")]
    TargetForm,
    /// Origin-form starting with `//`, which Perl's URI reads as `//authority/path`.
    #[error(
        "request-target starts with '//': Proxmox would read the first segment as a host name"
    )]
    NetworkPathTarget,
    /// A `#` anywhere in the target.
    #[error("request-target contains '#': a fragment is not part of a request")]
    Fragment,
    /// An `@` before the path: pveproxy's "invalid url", or user information in an absolute URL.
    #[error("request-target has '@' before its path (user information is not accepted)")]
    Userinfo,
    /// Absolute-form with an empty host or without a path.
    #[error("absolute request-target needs a host and a path starting with '/'")]
    AbsoluteWithoutPath,
    /// The percent-decoded path is not UTF-8.
    #[error("percent-decoded path is not valid UTF-8")]
    PathNotUtf8,
    /// `%00` in the path.
    #[error("percent-encoded NUL byte in the path")]
    PathNul,
    /// `%0A` anywhere but at the very end of an API path.
    #[error("percent-encoded newline in the middle of the path")]
    PathNewline,
    /// A control character (other than the one tolerated trailing newline) in the path.
    #[error("control character in the path")]
    PathControl,
    /// `/api2`, `/api2/`, `/api2foo`, `/api2/JSON`...: pveproxy answers 501 "no such uri".
    #[error("'/api2' must be followed by '/<format>/' with a lower-case format such as 'json'")]
    ApiPrefix,
    /// A well-formed but unknown format (`/api2/xml/...`): pveproxy answers 501.
    #[error(
        "unknown API format '{0}' (Proxmox serves json, extjs, htmljs, spiceconfig, png and html)"
    )]
    UnknownFormat(String),
    /// A Content-Type pveproxy answers with 506.
    #[error(
        "Content-Type '{0}' is not accepted by Proxmox \
         (use application/x-www-form-urlencoded or application/json)"
    )]
    ContentType(String),
    /// `multipart/form-data` without a usable `boundary=` parameter.
    #[error("Content-Type multipart/form-data needs a boundary parameter")]
    MultipartBoundary,
    /// A parameter name with non-ASCII bytes after percent-decoding.
    #[error(
        "parameter name '{0}' is not plain ASCII after percent-decoding \
         (Proxmox reads such names differently in the query and in a JSON body)"
    )]
    ParamName(String),
    /// A parameter value that is not UTF-8 after percent-decoding.
    #[error(
        "parameter '{0}' is not valid UTF-8 after percent-decoding \
         (how Proxmox repairs such bytes depends on its Perl version)"
    )]
    ParamValueEncoding(String),
    /// A form-body key without `=`: undefined for pveproxy, empty once it passes the call on.
    #[error(
        "form body has parameter '{0}' without '=': Proxmox reads it as undefined but passes \
         it on as empty; write '{0}=' or put it in the query string"
    )]
    ValuelessBodyKey(String),
    /// An empty pair in a form body (`&&`, a leading `&`), which Perl reads as an undefined
    /// parameter named ''.
    #[error("form body has an empty parameter ('&&' or a leading '&')")]
    EmptyBodyPair,
    /// The body is not valid JSON.
    #[error("body is not valid JSON: {0}")]
    Json(String),
    /// The JSON body is valid but not an object.
    #[error("JSON body must be an object of parameters")]
    JsonNotObject,
    /// The same key twice in a JSON object (JSON::XS keeps the last, many parsers the first).
    #[error("duplicate JSON key '{0}'")]
    DuplicateJsonKey(String),
    /// A nested object or array.
    #[error(
        "JSON parameter '{0}' holds a nested object or array: Proxmox parameters are flat \
         (a string, number, boolean, null, or an array of strings, numbers and booleans)"
    )]
    NestedJson(String),
    /// `null` inside an array.
    #[error("JSON array for parameter '{0}' contains null, which is not a parameter value")]
    JsonNullInArray(String),
    /// A JSON number whose Perl string form pvegate cannot be sure of.
    #[error("JSON number for parameter '{0}' is refused: {1}")]
    JsonNumber(String, &'static str),
}

/// Decodes a POST/PUT body of the given kind: [`parse_form_body`] or [`parse_json`].
///
/// Refused: `Multipart` (an upload's parameters are the query string and the multipart
/// fields, which pvegate does not read from a streamed upload).
pub fn parse_body(kind: BodyKind, data: &[u8]) -> Result<Params, RequestError> {
    match kind {
        BodyKind::Form => parse_form_body(data),
        BodyKind::Json => parse_json(data),
        BodyKind::Multipart => Err(RequestError::ContentType("multipart/form-data".into())),
    }
}

/// URI::Escape's `uri_unescape`: `s/%([0-9A-Fa-f]{2})/chr(hex($1))/eg`, on bytes.
pub(crate) fn uri_unescape(input: &[u8]) -> Vec<u8> {
    // Most values (token ids, paths, tickets) hold no `%`: copy up to the first one at once.
    let Some(first) = memchr::memchr(b'%', input) else {
        return input.to_vec();
    };
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..first]);
    let mut i = first;
    while i < input.len() {
        if input[i] == b'%' {
            let hi = input.get(i + 1).and_then(|b| hex_val(*b));
            let lo = input.get(i + 2).and_then(|b| hex_val(*b));
            if let (Some(h), Some(l)) = (hi, lo) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Perl's `\s` on a byte string without Unicode rules (5.18+): `[\t\n\x0B\x0C\r ]`.
pub(crate) fn is_perl_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
}

/// Perl truthiness of a string: false for `""` and `"0"`.
pub(crate) fn perl_true(s: &[u8]) -> bool {
    !(s.is_empty() || s == b"0")
}

/// A value quoted in an error message: at most 64 characters, control and non-ASCII
/// characters escaped, so a message never carries raw client bytes.
fn shown(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == 64 {
            out.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected parameters, see [`params`].
    pub(super) type Expected = &'static [(&'static str, Option<&'static str>)];

    /// The expected map from `(key, value)`: `None` is `Absent`, `[a|b]` is `Many` (`[]` empty).
    pub(super) fn params(entries: &[(&str, Option<&str>)]) -> Params {
        let mut map = BTreeMap::new();
        for (k, v) in entries {
            let value = match v {
                None => ParamValue::Absent,
                Some("[]") => ParamValue::Many(Vec::new()),
                Some(v) if v.starts_with('[') => {
                    ParamValue::Many(v[1..v.len() - 1].split('|').map(str::to_string).collect())
                }
                Some(v) => ParamValue::One(v.to_string()),
            };
            map.insert(k.to_string(), value);
        }
        Params { map }
    }

    #[test]
    fn uri_unescape_decodes_valid_pairs_only() {
        let cases: &[(&str, &[u8])] = &[
            ("%41%2f%2F", b"A//"),
            ("%zz%4%", b"%zz%4%"),
            ("%%41", b"%A"),
            ("%2541", b"%41"),
            ("+", b"+"),
            ("%C3%a9", "é".as_bytes()),
            ("%ff", b"\xff"),
        ];
        for (input, want) in cases {
            assert_eq!(uri_unescape(input.as_bytes()), *want, "{input}");
        }
    }

    #[test]
    fn merge_query_over_body() {
        let cases: &[(Params, &str, Expected)] = &[
            // `?vms` wipes the body's list: stopall would then stop every guest.
            (params(&[("vms", Some("100"))]), "vms", &[("vms", None)]),
            (
                params(&[("vms", Some("100"))]),
                "vms=104",
                &[("vms", Some("104"))],
            ),
            (
                params(&[("vms", Some("[100|104]"))]),
                "vms=105",
                &[("vms", Some("105"))],
            ),
            (
                params(&[("vms", Some("100"))]),
                "vms=1&vms=2",
                &[("vms", Some("[1|2]"))],
            ),
            (
                params(&[("a", Some("1"))]),
                "b=2",
                &[("a", Some("1")), ("b", Some("2"))],
            ),
            (params(&[("a", None)]), "", &[("a", None)]),
            (
                params(&[("_dc", Some("1")), ("a", Some("1"))]),
                "_dc=2",
                &[("a", Some("1"))],
            ),
            (
                Params::default(),
                "_dc=1&vmid=104",
                &[("vmid", Some("104"))],
            ),
        ];
        for (body, raw_query, want) in cases {
            let query = parse_urlencoded(raw_query.as_bytes()).unwrap();
            assert_eq!(
                Params::merge(body.clone(), query),
                params(want),
                "{raw_query:?}"
            );
        }
    }

    #[test]
    fn params_accessors() {
        let p = params(&[
            ("a", Some("1")),
            ("b", Some("[1|2]")),
            ("c", None),
            ("d", Some("[]")),
        ]);
        assert_eq!(p.one("a"), Some("1"));
        assert_eq!(p.one("b"), None);
        assert_eq!(p.one("c"), None);
        assert_eq!(p.get("c"), Some(&ParamValue::Absent));
        assert_eq!(p.get("x"), None);
        assert!(p.contains_key("c") && !p.is_defined("c") && p.is_defined("a"));
        assert_eq!(
            p.get("a").map(ParamValue::values),
            Some(&["1".to_string()][..])
        );
        assert_eq!(p.get("b").map(|v| v.values().len()), Some(2));
        assert!(p
            .get("c")
            .is_some_and(|v| v.values().is_empty() && v.is_absent()));
        assert_eq!(p.len(), 4);
        assert!(!p.is_empty());
        assert_eq!(
            p.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!((&p).into_iter().count(), 4);
    }

    #[test]
    fn messages_never_echo_raw_bytes() {
        let long = format!("{}\u{1b}[31m", "k".repeat(70));
        assert_eq!(shown("a\u{1b}é\n"), "a\\u{1b}\\u{e9}\\u{a}");
        assert!(shown(&long).ends_with("..."));
        let err = parse_json(br#"{"a\u001b":{}}"#).unwrap_err().to_string();
        assert!(!err.contains('\u{1b}'), "{err}");
    }
}
