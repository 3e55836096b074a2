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

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The formatter named after `/api2/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiFormat {
    Json,
    Extjs,
    Htmljs,
    Spiceconfig,
    Png,
    Html,
}

impl ApiFormat {
    /// Every format pveproxy registers a formatter for.
    pub const ALL: [ApiFormat; 6] = [
        ApiFormat::Json,
        ApiFormat::Extjs,
        ApiFormat::Htmljs,
        ApiFormat::Spiceconfig,
        ApiFormat::Png,
        ApiFormat::Html,
    ];

    /// The name as it appears in the path (`json` in `/api2/json/...`).
    pub fn as_str(self) -> &'static str {
        match self {
            ApiFormat::Json => "json",
            ApiFormat::Extjs => "extjs",
            ApiFormat::Htmljs => "htmljs",
            ApiFormat::Spiceconfig => "spiceconfig",
            ApiFormat::Png => "png",
            ApiFormat::Html => "html",
        }
    }

    /// The format with this exact (lower-case) path name, if pveproxy has a formatter for it.
    pub fn from_name(name: &str) -> Option<ApiFormat> {
        ApiFormat::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl std::fmt::Display for ApiFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request-target as pveproxy routes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api2/<format>/...`: decoded, non-empty path segments after the format.
    Api {
        format: ApiFormat,
        segments: Vec<String>,
    },
    /// Anything outside `/api2` (web UI pages and static files): the decoded path.
    Other { path: String },
}

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

// ---------------------------------------------------------------------------------------------
// Request-target
// ---------------------------------------------------------------------------------------------

/// Reads a raw request-target (as on the request line) the way pveproxy routes it, and returns
/// the target with the raw query (undecoded, without `?`; `None` if there is no `?`).
///
/// Mirrored: the path is percent-decoded exactly once (only valid `%XX`; `+` stays `+`; an
/// invalid `%` sequence stays literal, as URI::Escape's `uri_unescape`), so `%2F` separates
/// segments and `%252F` is a literal `%2F`. A decoded path starting with `/api2` must match
/// `^/api2/+([a-z][a-z0-9]+)(/.*)?$`, where Perl's `$` swallows one final newline (`%0A`);
/// the rest is split on `/` with empty segments dropped; `.` and `..` are ordinary segments.
/// Absolute-form (`https://host:8006/api2/...`) is read for its path, as Perl's URI does.
///
/// Refused ([`RequestError`]): any `#` (URI drops the fragment and its query); `@` before the
/// first `/` (pveproxy's "invalid url") and any user information in an absolute URL; a target
/// that is neither `/...` nor `http(s)://host/...`; origin-form starting with `//` (Perl's URI
/// takes the first segment for a host); bytes outside visible ASCII; decoded paths that are not
/// UTF-8 or hold NUL, a newline other than one final newline of an API path, or any other
/// control character; `/api2` paths with a bad prefix or an unknown format (pveproxy: 501).
pub fn parse_target(raw: &str) -> Result<(Target, Option<&str>), RequestError> {
    if raw.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(RequestError::TargetCharacter);
    }
    if raw.contains('#') {
        return Err(RequestError::Fragment);
    }
    // pveproxy: `if ($url =~ m|^[^/]*@|)` -> 400 "invalid url".
    let first_slash = raw.find('/').unwrap_or(raw.len());
    if raw[..first_slash].contains('@') {
        return Err(RequestError::Userinfo);
    }

    let path_and_query = if raw.starts_with("//") {
        return Err(RequestError::NetworkPathTarget);
    } else if raw.starts_with('/') {
        raw
    } else if let Some(rest) = strip_prefix_ignore_case(raw, "http://")
        .or_else(|| strip_prefix_ignore_case(raw, "https://"))
    {
        // URI.pm: authority is `[^/?#]*` after `//`.
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(end);
        if authority.contains('@') {
            return Err(RequestError::Userinfo);
        }
        if authority.is_empty() || !after.starts_with('/') {
            return Err(RequestError::AbsoluteWithoutPath);
        }
        after
    } else {
        return Err(RequestError::TargetForm);
    };

    let (raw_path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let decoded = if raw_path.contains('%') {
        Cow::Owned(
            String::from_utf8(uri_unescape(raw_path.as_bytes()))
                .map_err(|_| RequestError::PathNotUtf8)?,
        )
    } else {
        // Nothing to decode: the path is its own decoding (and already UTF-8). Borrowed, as
        // an API path is only read to copy its segments out.
        Cow::Borrowed(raw_path)
    };
    Ok((route(decoded)?, query))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Routes a decoded path: pveproxy's `$path =~ m/^\Q$base_uri\E/` then `$split_abs_uri`, then
/// RESTHandler's `grep { length($_) > 0 } split('\/+', $rel_uri)`.
fn route(decoded: Cow<'_, str>) -> Result<Target, RequestError> {
    if decoded.contains('\0') {
        return Err(RequestError::PathNul);
    }
    if !decoded.starts_with("/api2") {
        if decoded.contains('\n') {
            return Err(RequestError::PathNewline);
        }
        if decoded.chars().any(char::is_control) {
            return Err(RequestError::PathControl);
        }
        return Ok(Target::Other {
            path: decoded.into_owned(),
        });
    }

    // Perl's `$` also matches before one final "\n"; `.` matches anything but "\n".
    let body = decoded.strip_suffix('\n').unwrap_or(&decoded);
    if body.contains('\n') {
        return Err(RequestError::PathNewline);
    }
    if body.chars().any(char::is_control) {
        return Err(RequestError::PathControl);
    }
    let rest = &body["/api2".len()..];
    let after_slashes = rest.trim_start_matches('/');
    if after_slashes.len() == rest.len() {
        return Err(RequestError::ApiPrefix); // `/api2`, `/api2foo`
    }
    let name_end = after_slashes
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .unwrap_or(after_slashes.len());
    let (name, tail) = after_slashes.split_at(name_end);
    let name_ok = name.len() >= 2 && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !name_ok || !(tail.is_empty() || tail.starts_with('/')) {
        return Err(RequestError::ApiPrefix);
    }
    let format =
        ApiFormat::from_name(name).ok_or_else(|| RequestError::UnknownFormat(name.to_string()))?;
    // Allocated once: `tail` is empty or starts with `/`, so it has no more segments than
    // slashes (a collected iterator would start small and grow for most API paths).
    let mut segments = Vec::with_capacity(tail.bytes().filter(|&b| b == b'/').count());
    segments.extend(
        tail.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    Ok(Target::Api { format, segments })
}

/// URI::Escape's `uri_unescape`: `s/%([0-9A-Fa-f]{2})/chr(hex($1))/eg`, on bytes.
pub(crate) fn uri_unescape(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
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

// ---------------------------------------------------------------------------------------------
// Content type
// ---------------------------------------------------------------------------------------------

/// How pveproxy reads a POST/PUT body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`, or no usable Content-Type: [`parse_form_body`].
    Form,
    /// `application/json`: [`parse_json`].
    Json,
    /// `multipart/form-data` with a boundary: only the upload endpoint
    /// (`POST /nodes/{node}/storage/{storage}/upload`) accepts it; pveproxy answers 506 to it
    /// anywhere else, so the caller must refuse it there.
    Multipart,
}

/// Classifies a Content-Type the way pveproxy's `parse_content_type` and
/// `authenticate_and_handle_request` do.
///
/// Pass the value as Perl sees it: several `Content-Type` headers joined with `", "` (see
/// [`crate::pve::auth::joined_header`]). Mirrored: the type is the text before the first `;` or
/// `,` (and the whitespace around it), compared case-sensitively, with no trimming of leading or
/// trailing whitespace when there is no separator. An absent header, an empty one, `"0"`, or an
/// empty type (`"; charset=x"`) is a form body, as Perl's truthiness makes it.
///
/// Refused: every other type (pveproxy: 506), including `Application/JSON`; and
/// `multipart/form-data` without a true `boundary=` parameter (pveproxy dies on the upload).
/// pveproxy only checks the type when `Content-Length` is above zero. Without a body, every
/// type but `application/json` reads as an empty form, and `application/json` fails
/// (`decode_json` of nothing), so callers should classify only requests with content.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, RequestError> {
    let Some(ct) = content_type else {
        return Ok(BodyKind::Form);
    };
    if !perl_true(ct.as_bytes()) {
        return Ok(BodyKind::Form);
    }
    let fields = split_content_type(ct);
    let first = fields.first().copied().unwrap_or("");
    if !perl_true(first.as_bytes()) {
        return Ok(BodyKind::Form);
    }
    match first {
        "application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        "application/json" => Ok(BodyKind::Json),
        "multipart/form-data" => {
            if fields[1..].iter().any(|f| boundary_param(f)) {
                Ok(BodyKind::Multipart)
            } else {
                Err(RequestError::MultipartBoundary)
            }
        }
        other => Err(RequestError::ContentType(shown(other))),
    }
}

/// Perl `split(/\s*[;,]\s*/, $ctype)`: leading empty field kept, trailing empty fields dropped.
fn split_content_type(ct: &str) -> Vec<&str> {
    let bytes = ct.as_bytes();
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b';' || bytes[i] == b',' {
            let mut field_end = i;
            while field_end > start && is_perl_space(bytes[field_end - 1]) {
                field_end -= 1;
            }
            fields.push(&ct[start..field_end]);
            let mut next = i + 1;
            while next < bytes.len() && is_perl_space(bytes[next]) {
                next += 1;
            }
            start = next;
            i = next;
        } else {
            i += 1;
        }
    }
    fields.push(&ct[start..]);
    while fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    fields
}

/// `$v =~ m/^\s*boundary\s*=\s*(\S+?)\s*$/` with a true (Perl) boundary.
fn boundary_param(field: &str) -> bool {
    let b = field.as_bytes();
    let trim_start = |mut i: usize| {
        while i < b.len() && is_perl_space(b[i]) {
            i += 1;
        }
        i
    };
    let i = trim_start(0);
    let Some(rest) = b[i..].strip_prefix(b"boundary") else {
        return false;
    };
    let j = b.len() - rest.len();
    let j = trim_start(j);
    if b.get(j) != Some(&b'=') {
        return false;
    }
    let k = trim_start(j + 1);
    let value = &b[k..];
    let end = value
        .iter()
        .position(|c| is_perl_space(*c))
        .unwrap_or(value.len());
    let (boundary, trailing) = value.split_at(end);
    trailing.iter().all(|c| is_perl_space(*c)) && perl_true(boundary)
}

// ---------------------------------------------------------------------------------------------
// application/x-www-form-urlencoded
// ---------------------------------------------------------------------------------------------

/// Decodes query-string or form data exactly as pveproxy's `decode_urlencoded`.
///
/// Mirrored (each checked against Perl): empty data and `"0"` give no parameters; pairs are
/// split on `&` and `;`, trailing empty pairs dropped, an empty pair elsewhere (`a=1&&b=2`,
/// `&a=1`) is the key `""` with no value; a pair is split on `=` keeping the first two fields
/// (`a=b=c` gives `b`, `a==b` gives `""`, `a=` gives `""`, `a` gives `Absent`); `+` becomes a
/// space, then valid `%XX` are decoded (so `%2B` is `+`, `%zz` stays `%zz`); the value is
/// then UTF-8 decoded (`Encode::decode('utf8', ...)`); a repeated key with a value becomes
/// `Many` in order; a key without `=` sets `Absent` (wiping earlier values), and a value after
/// an `Absent` starts afresh as `One`.
///
/// Refused: names that are not ASCII after decoding (Perl keeps them as bytes here but as
/// characters in a JSON body, so the query-over-body merge could differ); values that are not
/// valid UTF-8 after decoding. Perl's lax decoder would repair those with U+FFFD, but how many
/// bytes one U+FFFD swallows depends on the Perl version (Perl 5.36 swallows the valid
/// character after a stray continuation byte: `%80%E2%80%A8` gives a single U+FFFD), and it
/// lets encoded surrogates and code points above U+10FFFF through.
///
/// Use this for the query string; for a form body use [`parse_form_body`].
pub fn parse_urlencoded(data: &[u8]) -> Result<Params, RequestError> {
    let mut map: BTreeMap<String, ParamValue> = BTreeMap::new();
    if !perl_true(data) {
        return Ok(Params { map });
    }
    // Perl's split drops trailing empty fields: the same as cutting trailing separators off
    // (when nothing else is left, there is no pair at all).
    let end = data
        .iter()
        .rposition(|b| *b != b'&' && *b != b';')
        .map_or(0, |i| i + 1);
    let data = &data[..end];
    let pairs = data
        .split(|b| *b == b'&' || *b == b';')
        .take(if data.is_empty() { 0 } else { usize::MAX });
    for pair in pairs {
        // `my ($k, $v) = split(/=/, $kv);` has an implicit LIMIT of 3.
        let mut fields = pair.splitn(3, |b| *b == b'=');
        let raw_key = fields.next().unwrap_or_default();
        let raw_value = fields.next();

        let key_bytes = form_unescape(raw_key);
        let key = match String::from_utf8(key_bytes) {
            Ok(k) if k.is_ascii() => k,
            Ok(k) => return Err(RequestError::ParamName(shown(&k))),
            Err(e) => {
                return Err(RequestError::ParamName(shown(&String::from_utf8_lossy(
                    e.as_bytes(),
                ))))
            }
        };
        let Some(raw_value) = raw_value else {
            map.insert(key, ParamValue::Absent);
            continue;
        };
        let value = String::from_utf8(form_unescape(raw_value))
            .map_err(|_| RequestError::ParamValueEncoding(shown(&key)))?;
        // One search per pair: the entry is filled or updated in place.
        match map.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(ParamValue::One(value));
            }
            Entry::Occupied(slot) => {
                let slot = slot.into_mut();
                match slot {
                    ParamValue::One(old) => {
                        let old = std::mem::take(old);
                        *slot = ParamValue::Many(vec![old, value]);
                    }
                    ParamValue::Many(list) => list.push(value),
                    ParamValue::Absent => *slot = ParamValue::One(value),
                }
            }
        }
    }
    Ok(Params { map })
}

/// Decodes a form body: [`parse_urlencoded`], refusing keys without a value.
///
/// Refused: a key without `=` (or an empty pair). pveproxy reads it as `undef`, but when it
/// passes the call on to pvedaemon or another node (every `protected` or `proxyto` call) it
/// re-encodes the body with `URI->query_form`, which writes `undef` as `key=`, so the handler
/// sees an empty string. The two readings differ (`exclude` for vzdump is the dangerous one),
/// so pvegate refuses both. In the query string the same key stays undefined on both hops,
/// because the query is forwarded verbatim.
pub fn parse_form_body(data: &[u8]) -> Result<Params, RequestError> {
    let params = parse_urlencoded(data)?;
    if let Some((key, _)) = params.map.iter().find(|(_, v)| v.is_absent()) {
        return Err(if key.is_empty() {
            RequestError::EmptyBodyPair
        } else {
            RequestError::ValuelessBodyKey(shown(key))
        });
    }
    Ok(params)
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

/// `s/\+/ /g` then [`uri_unescape`], in one pass and one allocation: a `+` is never part of a
/// valid `%XX`, so replacing it while decoding gives the same bytes.
fn form_unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = s.get(i + 1).and_then(|b| hex_val(*b));
                let lo = s.get(i + 2).and_then(|b| hex_val(*b));
                if let (Some(h), Some(l)) = (hi, lo) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// application/json
// ---------------------------------------------------------------------------------------------

/// Decodes a JSON body as pveproxy's `decode_json` (JSON::XS) and Perl's stringification do.
///
/// Mirrored: the body must be one JSON object (whitespace around it allowed); `null` is
/// `Absent`; strings are kept as decoded; `true`/`false` become `"1"`/`"0"`; an integer literal
/// becomes its decimal text (`-0` is `"0"`); a literal with a fraction or exponent becomes what
/// JSON::XS computes, printed as Perl does (`%.15g`), so `104.0`, `1.04e2` and `10400e-2` are
/// all `"104"` and `0.1` is `"0.1"`; an array of strings, numbers and booleans is `Many`.
///
/// Refused: anything but an object at the top; a duplicate key (JSON::XS keeps the last one,
/// other readers the first); names that are not ASCII; nested objects and arrays, and `null`
/// inside an array (Proxmox parameters are flat); integers outside the 64-bit range (JSON::XS
/// keeps their digits as a string, or turns them into a float, depending on its version);
/// fraction/exponent numbers with more than 40 digits, beyond `1e-250..1e250` in magnitude,
/// or whose `%.15g` text would change within a few units in the last place of the value
/// (JSON::XS's own float reader and glibc `pow` are not correctly rounded, so such a number
/// could print differently in Perl).
pub fn parse_json(data: &[u8]) -> Result<Params, RequestError> {
    let text = std::str::from_utf8(data)
        .map_err(|e| RequestError::Json(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut parser = JsonParser {
        s: text.as_bytes(),
        text,
        i: 0,
    };
    parser.ws();
    match parser.peek() {
        Some(b'{') => {}
        None => return Err(RequestError::Json("empty body".into())),
        Some(_) => {
            // Tell "valid JSON but not an object" apart from garbage where cheap.
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => RequestError::JsonNotObject,
                Err(e) => RequestError::Json(e.to_string()),
            });
        }
    }
    let params = parser.object()?;
    parser.ws();
    if parser.i != parser.s.len() {
        return Err(parser.error("trailing characters after the object"));
    }
    Ok(params)
}

struct JsonParser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

enum JsonScalar {
    Null,
    Value(String),
}

impl<'a> JsonParser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn error(&self, what: &str) -> RequestError {
        RequestError::Json(format!("{what} at byte {}", self.i))
    }

    /// JSON whitespace (JSON::XS `decode_ws` without the relaxed `#` comments).
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), RequestError> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// The top-level object; `self.i` is at `{`.
    fn object(&mut self) -> Result<Params, RequestError> {
        self.i += 1;
        let mut map = BTreeMap::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Params { map });
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            if !key.is_ascii() {
                return Err(RequestError::ParamName(shown(&key)));
            }
            self.ws();
            self.expect(b':', "expected ':'")?;
            self.ws();
            let value = self.value(&key)?;
            if map.contains_key(&key) {
                return Err(RequestError::DuplicateJsonKey(shown(&key)));
            }
            map.insert(key, value);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Params { map });
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn value(&mut self, key: &str) -> Result<ParamValue, RequestError> {
        match self.peek() {
            Some(b'[') => self.array(key),
            Some(b'{') => Err(RequestError::NestedJson(shown(key))),
            _ => Ok(match self.scalar(key)? {
                JsonScalar::Null => ParamValue::Absent,
                JsonScalar::Value(v) => ParamValue::One(v),
            }),
        }
    }

    fn array(&mut self, key: &str) -> Result<ParamValue, RequestError> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(ParamValue::Many(items));
        }
        loop {
            self.ws();
            match self.peek() {
                Some(b'[' | b'{') => return Err(RequestError::NestedJson(shown(key))),
                _ => match self.scalar(key)? {
                    JsonScalar::Null => return Err(RequestError::JsonNullInArray(shown(key))),
                    JsonScalar::Value(v) => items.push(v),
                },
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(ParamValue::Many(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    fn scalar(&mut self, key: &str) -> Result<JsonScalar, RequestError> {
        match self.peek() {
            Some(b'"') => Ok(JsonScalar::Value(self.string()?)),
            Some(b't') => self.literal("true", JsonScalar::Value("1".into())),
            Some(b'f') => self.literal("false", JsonScalar::Value("0".into())),
            Some(b'n') => self.literal("null", JsonScalar::Null),
            Some(b'-' | b'0'..=b'9') => {
                let literal = self.number()?;
                json_number_text(literal)
                    .map(JsonScalar::Value)
                    .map_err(|why| RequestError::JsonNumber(shown(key), why))
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &str, value: JsonScalar) -> Result<JsonScalar, RequestError> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    /// A string token; its escapes are decoded (and checked) by serde_json.
    fn string(&mut self) -> Result<String, RequestError> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => self.i += 2,
                Some(_) => self.i += 1,
            }
        }
        self.i += 1;
        let token = self
            .text
            .get(start..self.i)
            .ok_or_else(|| self.error("bad string"))?;
        serde_json::from_str::<String>(token)
            .map_err(|e| RequestError::Json(format!("bad string at byte {start}: {e}")))
    }

    /// A number token, checked against the JSON grammar; returns its text.
    fn number(&mut self) -> Result<&'a str, RequestError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("malformed number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(self.error("malformed number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("malformed number"));
            }
        }
        if matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error("malformed number (leading zero)"));
        }
        Ok(&self.text[start..self.i])
    }
}

/// The string Perl makes of a JSON number literal (grammar already checked).
fn json_number_text(literal: &str) -> Result<String, &'static str> {
    let is_float = literal.contains(['.', 'e', 'E']);
    if !is_float {
        // JSON::XS: an IV or UV, printed as decimal.
        return if literal.starts_with('-') {
            literal.parse::<i64>().map(|v| v.to_string())
        } else {
            literal.parse::<u64>().map(|v| v.to_string())
        }
        .map_err(|_| "integer outside the 64-bit range");
    }

    let mantissa = literal.split(['e', 'E']).next().unwrap_or_default();
    let digit_count = mantissa.bytes().filter(u8::is_ascii_digit).count();
    if digit_count > 40 {
        return Err("more than 40 digits");
    }
    let exponent_digits = literal
        .split(['e', 'E'])
        .nth(1)
        .map(|e| e.trim_start_matches(['+', '-']).len())
        .unwrap_or(0);
    if exponent_digits > 4 {
        return Err("exponent out of range");
    }
    let exact: f64 = literal.parse().map_err(|_| "not a number")?;
    let xs = json_xs_atof(literal);
    if !xs.is_finite() {
        // e.g. `0e400`: JSON::XS computes 0 * pow(10, 400), which is NaN.
        return Err("magnitude out of range");
    }
    if exact == 0.0 {
        // Perl prints both zeros as "0"; a literal that only underflows to zero is refused.
        return if xs == 0.0 && mantissa.bytes().all(|b| matches!(b, b'0' | b'.' | b'-')) {
            Ok("0".into())
        } else {
            Err("too close to zero")
        };
    }
    if !(1e-250..=1e250).contains(&exact.abs()) {
        return Err("magnitude out of range");
    }
    let text = perl_nv_string(xs);
    // JSON::XS's sum must agree with the correctly rounded value to a few ulps (a sanity check
    // on the emulation), and every double within 2 ulps of it (room for a misrounded `pow`)
    // must print alike.
    if exact.is_sign_negative() != xs.is_sign_negative()
        || exact.abs().to_bits().abs_diff(xs.abs().to_bits()) > 8
    {
        return Err("its value is uncertain");
    }
    let magnitude = xs.abs();
    let magnitude_text = perl_nv_string(magnitude);
    let bits = magnitude.to_bits();
    if (bits - 2..=bits + 2).any(|b| perl_nv_string(f64::from_bits(b)) != magnitude_text) {
        return Err("it lies too close to a rounding boundary of Perl's 15-digit output");
    }
    Ok(text)
}

/// JSON::XS `json_atof`: digits are gathered into 64-bit chunks, and each chunk is scaled by
/// `pow(10, exponent)` and summed (here with correctly rounded powers of ten; the caller
/// allows for a misrounded `pow`).
fn json_xs_atof(literal: &str) -> f64 {
    let (neg, digits) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest.as_bytes()),
        None => (false, literal.as_bytes()),
    };
    let mut accum = 0.0;
    let mut expo: i64 = 0;
    json_xs_scan(digits, 0, &mut accum, &mut expo, false, 10);
    if neg {
        -accum
    } else {
        accum
    }
}

fn json_xs_scan(
    s: &[u8],
    mut i: usize,
    accum: &mut f64,
    expo: &mut i64,
    postdp: bool,
    maxdepth: i32,
) {
    let mut uaccum: u64 = 0;
    let mut eaccum: i64 = 0;
    let maxdepth = maxdepth - 1;
    if maxdepth <= 0 {
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    loop {
        match s.get(i) {
            Some(d @ b'0'..=b'9') => {
                i += 1;
                uaccum = uaccum * 10 + u64::from(d - b'0');
                eaccum += 1;
                if uaccum >= (u64::MAX - 9) / 10 {
                    if postdp {
                        *expo -= eaccum;
                    }
                    json_xs_scan(s, i, accum, expo, postdp, maxdepth);
                    if postdp {
                        *expo += eaccum;
                    }
                    break;
                }
            }
            Some(b'.') => {
                json_xs_scan(s, i + 1, accum, expo, true, maxdepth);
                break;
            }
            Some(b'e' | b'E') => {
                i += 1;
                let neg = s.get(i) == Some(&b'-');
                if matches!(s.get(i), Some(b'-' | b'+')) {
                    i += 1;
                }
                let mut exp2: i64 = 0;
                while let Some(d @ b'0'..=b'9') = s.get(i) {
                    exp2 = exp2 * 10 + i64::from(d - b'0');
                    i += 1;
                }
                *expo += if neg { -exp2 } else { exp2 };
                break;
            }
            _ => break,
        }
    }
    if postdp {
        *expo -= eaccum;
    }
    *accum += uaccum as f64 * pow10(*expo);
    *expo += eaccum;
}

/// The double nearest to 10^e.
fn pow10(e: i64) -> f64 {
    format!("1e{e}").parse().unwrap_or(f64::NAN)
}

/// Perl's stringification of a finite NV: `%.15g` (glibc `gcvt`), with both zeros as `"0"`.
fn perl_nv_string(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{:.14e}", v.abs()); // "d.dddddddddddddde<exp>", correctly rounded
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if v < 0.0 { "-" } else { "" };
    if !(-4..15).contains(&exp) {
        let mut m = format!("{}.{}", &digits[..1], &digits[1..]);
        trim_fraction(&mut m);
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{esign}{:02}", exp.unsigned_abs())
    } else if exp >= 0 {
        let split = exp as usize + 1;
        let mut m = format!("{}.{}", &digits[..split], &digits[split..]);
        trim_fraction(&mut m);
        format!("{sign}{m}")
    } else {
        let zeros = "0".repeat((-exp - 1) as usize);
        let mut m = format!("0.{zeros}{digits}");
        trim_fraction(&mut m);
        format!("{sign}{m}")
    }
}

/// `%g` drops trailing zeros of the fraction, and the point if nothing is left.
fn trim_fraction(m: &mut String) {
    if m.contains('.') {
        while m.ends_with('0') {
            m.pop();
        }
        if m.ends_with('.') {
            m.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(format: ApiFormat, segments: &[&str]) -> Target {
        Target::Api {
            format,
            segments: segments.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn other(path: &str) -> Target {
        Target::Other {
            path: path.to_string(),
        }
    }

    use ApiFormat::*;

    #[test]
    fn target_routes_like_pveproxy() {
        let cases: &[(&str, Target, Option<&str>)] = &[
            // %2F is a separator: the path is decoded once, before splitting.
            (
                "/api2/json/nodes/pve/qemu%2F104%2Fstatus%2Fstop",
                api(Json, &["nodes", "pve", "qemu", "104", "status", "stop"]),
                None,
            ),
            (
                "/api2/json/nodes/pve/qemu%2f104",
                api(Json, &["nodes", "pve", "qemu", "104"]),
                None,
            ),
            // Doubled, leading and trailing slashes vanish.
            (
                "/api2//json//nodes//pve/",
                api(Json, &["nodes", "pve"]),
                None,
            ),
            (
                "/api2/json//nodes//pve/qemu/104/status/stop/",
                api(Json, &["nodes", "pve", "qemu", "104", "status", "stop"]),
                None,
            ),
            (
                "/api2/json/nodes/pve/qemu%2F%2F104",
                api(Json, &["nodes", "pve", "qemu", "104"]),
                None,
            ),
            // One final %0A is swallowed by Perl's `$`.
            (
                "/api2/json/nodes/pve/qemu/104/status/stop%0A",
                api(Json, &["nodes", "pve", "qemu", "104", "status", "stop"]),
                None,
            ),
            ("/api2/json/x/%0a", api(Json, &["x"]), None),
            ("/api2/json%0A", api(Json, &[]), None),
            ("/api2/json", api(Json, &[]), None),
            ("/api2/json/", api(Json, &[]), None),
            // Decoded once only.
            (
                "/api2/json/nodes/%25310%34",
                api(Json, &["nodes", "%3104"]),
                None,
            ),
            ("/api2/json/a%252Fb", api(Json, &["a%2Fb"]), None),
            ("/%61pi2/json/version", api(Json, &["version"]), None),
            ("/api2/json/a+b", api(Json, &["a+b"]), None),
            ("/api2/json/a%20b", api(Json, &["a b"]), None),
            ("/api2/json/a%zz%4", api(Json, &["a%zz%4"]), None),
            ("/api2/json/a%", api(Json, &["a%"]), None),
            ("/api2/json/caf%C3%A9", api(Json, &["café"]), None),
            // `.` and `..` are ordinary segments.
            (
                "/api2/json/nodes/./../x",
                api(Json, &["nodes", ".", "..", "x"]),
                None,
            ),
            // `@` after the first slash is fine (user ids in paths).
            (
                "/api2/json/access/users/root@pam",
                api(Json, &["access", "users", "root@pam"]),
                None,
            ),
            // Every registered format.
            ("/api2/extjs/version", api(Extjs, &["version"]), None),
            ("/api2/htmljs/version", api(Htmljs, &["version"]), None),
            ("/api2/spiceconfig/x", api(Spiceconfig, &["x"]), None),
            ("/api2/png/x", api(Png, &["x"]), None),
            (
                "/api2/html/access/ticket",
                api(Html, &["access", "ticket"]),
                None,
            ),
            // Queries are returned raw.
            (
                "/api2/json/version?a=%2B+b",
                api(Json, &["version"]),
                Some("a=%2B+b"),
            ),
            ("/api2/json/version?", api(Json, &["version"]), Some("")),
            (
                "/api2/json/version?a?b",
                api(Json, &["version"]),
                Some("a?b"),
            ),
            ("/api2/json/x%3Fy?z", api(Json, &["x?y"]), Some("z")),
            // Absolute-form.
            (
                "https://pve:8006/api2/json/nodes/pve/qemu/104/status/stop?x=1",
                api(Json, &["nodes", "pve", "qemu", "104", "status", "stop"]),
                Some("x=1"),
            ),
            (
                "http://pve/api2/json/version",
                api(Json, &["version"]),
                None,
            ),
            (
                "HTTPS://pve/api2/json/version",
                api(Json, &["version"]),
                None,
            ),
            (
                "https://[::1]:8006/api2/json/version",
                api(Json, &["version"]),
                None,
            ),
            (
                "https://pve//api2/json/version",
                other("//api2/json/version"),
                None,
            ),
            // Outside /api2.
            ("/", other("/"), None),
            (
                "/pve2/js/pvemanagerlib.js?ver=9.1",
                other("/pve2/js/pvemanagerlib.js"),
                Some("ver=9.1"),
            ),
            ("/API2/json/version", other("/API2/json/version"), None),
            ("/novnc/%2e%2e/x", other("/novnc/../x"), None),
            (
                "/?console=kvm&vmid=104",
                other("/"),
                Some("console=kvm&vmid=104"),
            ),
        ];
        for (raw, target, query) in cases {
            assert_eq!(parse_target(raw), Ok((target.clone(), *query)), "{raw}");
        }
    }

    #[test]
    fn target_refusals() {
        use RequestError as E;
        let cases: &[(&str, RequestError)] = &[
            (
                "/api2/json/nodes/pve/qemu/104%0A/status/stop",
                E::PathNewline,
            ),
            ("/api2/json/stop%0A%0A", E::PathNewline),
            ("/api2%0A/json/x", E::PathNewline),
            ("/novnc/x%0A", E::PathNewline),
            ("/api2/json/stop%0D%0A", E::PathControl),
            ("/api2/json/a%09b", E::PathControl),
            ("/api2/json/a%7F", E::PathControl),
            ("/api2/json/a%C2%85", E::PathControl),
            ("/x%1B", E::PathControl),
            ("/api2/json/a%00", E::PathNul),
            ("/x%00", E::PathNul),
            ("/api2/json/a%FF", E::PathNotUtf8),
            ("/api2/json/a%C3", E::PathNotUtf8),
            ("/api2/json/x#frag?y", E::Fragment),
            ("/api2/json/x?y#", E::Fragment),
            ("#", E::Fragment),
            ("user@pve/api2/json/version", E::Userinfo),
            ("http://user@pve/api2/json/version", E::Userinfo),
            ("https://u:p@pve:8006/api2/json/version", E::Userinfo),
            ("https://pve@/api2/json/version", E::Userinfo),
            ("//evil/api2/json/version", E::NetworkPathTarget),
            ("//api2/json/version", E::NetworkPathTarget),
            ("*", E::TargetForm),
            ("api2/json/version", E::TargetForm),
            ("foo:/api2/json/version", E::TargetForm),
            ("http:/api2/json/version", E::TargetForm),
            ("\"/api2/json/version\"", E::TargetForm),
            ("<http://h/api2/json/version>", E::TargetForm),
            ("", E::TargetForm),
            ("https://pve", E::AbsoluteWithoutPath),
            ("https://pve?x=1", E::AbsoluteWithoutPath),
            ("https:///api2/json/version", E::AbsoluteWithoutPath),
            ("/api2/json/a b", E::TargetCharacter),
            ("/api2/json/é", E::TargetCharacter),
            ("/api2/json/a\tb", E::TargetCharacter),
            ("/api2/json/a\x7f", E::TargetCharacter),
            ("/api2", E::ApiPrefix),
            ("/api2/", E::ApiPrefix),
            ("/api2//", E::ApiPrefix),
            ("/api2foo", E::ApiPrefix),
            ("/api2foo/json/version", E::ApiPrefix),
            ("/api2/JSON/version", E::ApiPrefix),
            ("/api2/Json/version", E::ApiPrefix),
            ("/api2/j/version", E::ApiPrefix),
            ("/api2/1json/version", E::ApiPrefix),
            ("/api2/json.x/version", E::ApiPrefix),
            ("/api2/json%20/version", E::ApiPrefix),
            ("/api2%2Fjson%3Fx", E::ApiPrefix),
            ("/api2/xml/version", E::UnknownFormat("xml".into())),
            ("/api2/json2/version", E::UnknownFormat("json2".into())),
            ("/api2/jsonx", E::UnknownFormat("jsonx".into())),
        ];
        for (raw, err) in cases {
            assert_eq!(parse_target(raw), Err(err.clone()), "{raw:?}");
        }
    }

    #[test]
    fn target_messages_speak_to_the_client() {
        assert_eq!(
            parse_target("/api2/json/a%0Ab").unwrap_err().to_string(),
            "percent-encoded newline in the middle of the path"
        );
        assert_eq!(
            parse_target("/api2/xml/x").unwrap_err().to_string(),
            "unknown API format 'xml' (Proxmox serves json, extjs, htmljs, spiceconfig, png and html)"
        );
    }

    #[test]
    fn format_names_round_trip() {
        for format in ApiFormat::ALL {
            assert_eq!(ApiFormat::from_name(format.as_str()), Some(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        assert_eq!(ApiFormat::from_name("JSON"), None);
        assert_eq!(ApiFormat::from_name("xml"), None);
    }

    #[test]
    fn form_unescape_is_plus_to_space_then_uri_unescape() {
        let two_step = |s: &[u8]| {
            let spaced: Vec<u8> = s
                .iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect();
            uri_unescape(&spaced)
        };
        for input in [
            "",
            "a+b",
            "%2B",
            "%2b+",
            "%+2",
            "%2+",
            "%%41",
            "+%",
            "%4",
            "a%zz+%41%42%c3%a9",
            "++%20",
        ] {
            assert_eq!(
                form_unescape(input.as_bytes()),
                two_step(input.as_bytes()),
                "{input}"
            );
        }
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
    fn body_kind_like_parse_content_type() {
        use BodyKind::*;
        let ok: &[(Option<&str>, BodyKind)] = &[
            (None, Form),
            (Some(""), Form),
            (Some("0"), Form),
            (Some("0; charset=x"), Form),
            (Some("; charset=x"), Form),
            (Some(";"), Form),
            (Some(" ,"), Form),
            (Some("application/x-www-form-urlencoded"), Form),
            (
                Some("application/x-www-form-urlencoded; charset=UTF-8"),
                Form,
            ),
            (Some("application/json"), Json),
            (Some("application/json; charset=UTF-8"), Json),
            (Some("application/json;charset=utf-8"), Json),
            (Some("application/json , text/plain"), Json),
            (Some("application/json\t;x"), Json),
            (Some("application/json,"), Json),
            (Some("multipart/form-data; boundary=----abc"), Multipart),
            (Some("multipart/form-data;boundary = abc "), Multipart),
            (
                Some("multipart/form-data; charset=x; boundary=abc"),
                Multipart,
            ),
        ];
        for (ct, kind) in ok {
            assert_eq!(body_kind(*ct), Ok(*kind), "{ct:?}");
        }
        let refused: &[&str] = &[
            "text/plain",
            "Application/JSON",
            "application/JSON",
            "application/json ",
            " application/json",
            "application/jsonp",
            "application/json-patch+json",
            "application/x-www-form-urlencoded ",
            "text/plain, application/json",
        ];
        for ct in refused {
            assert!(
                matches!(body_kind(Some(ct)), Err(RequestError::ContentType(_))),
                "{ct:?}"
            );
        }
        for ct in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=0",
            "multipart/form-data; Boundary=abc",
            "multipart/form-data; boundary=a b",
        ] {
            assert_eq!(
                body_kind(Some(ct)),
                Err(RequestError::MultipartBoundary),
                "{ct:?}"
            );
        }
        assert_eq!(
            body_kind(Some("text/plain")).unwrap_err().to_string(),
            "Content-Type 'text/plain' is not accepted by Proxmox \
             (use application/x-www-form-urlencoded or application/json)"
        );
    }

    /// Expected parameters, see [`params`].
    type Expected = &'static [(&'static str, Option<&'static str>)];
    /// A test on a refusal.
    type Check<'a> = &'a dyn Fn(&RequestError) -> bool;

    /// The expected map from `(key, value)`: `None` is `Absent`, `[a|b]` is `Many` (`[]` empty).
    fn params(entries: &[(&str, Option<&str>)]) -> Params {
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
    fn urlencoded_like_decode_urlencoded() {
        let cases: &[(&str, Expected)] = &[
            ("", &[]),
            ("0", &[]),
            ("00", &[("00", None)]),
            // `;` separates too.
            ("vms=100;vms=104", &[("vms", Some("[100|104]"))]),
            ("vms=100&vms=104", &[("vms", Some("[100|104]"))]),
            ("vms=100&vms=104;vms=105", &[("vms", Some("[100|104|105]"))]),
            ("vms=100%2C104", &[("vms", Some("100,104"))]),
            ("vms=100%20104", &[("vms", Some("100 104"))]),
            ("vms=100%C2%A0104", &[("vms", Some("100\u{a0}104"))]),
            ("vms=100%E2%80%A8104", &[("vms", Some("100\u{2028}104"))]),
            ("vms=100%0B104", &[("vms", Some("100\u{b}104"))]),
            ("vms=104%00105", &[("vms", Some("104\u{0}105"))]),
            ("vmid=104%0A", &[("vmid", Some("104\n"))]),
            // split(/=/) keeps the first two fields; a trailing empty one is kept too.
            ("a=b=c", &[("a", Some("b"))]),
            ("a==b", &[("a", Some(""))]),
            ("a=", &[("a", Some(""))]),
            ("vms=", &[("vms", Some(""))]),
            ("a", &[("a", None)]),
            ("=", &[("", Some(""))]),
            ("=x", &[("", Some("x"))]),
            // Empty pairs: trailing ones dropped, others are the key "" without value.
            ("a=1&", &[("a", Some("1"))]),
            ("a=1&&", &[("a", Some("1"))]),
            ("&", &[]),
            (";", &[]),
            (
                "a=1&&b=2",
                &[("", None), ("a", Some("1")), ("b", Some("2"))],
            ),
            ("&a=1", &[("", None), ("a", Some("1"))]),
            // `+` is a space, decoded before %XX; invalid % sequences stay.
            ("a+b=c+d", &[("a b", Some("c d"))]),
            ("a=%2B", &[("a", Some("+"))]),
            ("a=1%2B1+2", &[("a", Some("1+1 2"))]),
            ("a=%zz%4", &[("a", Some("%zz%4"))]),
            ("a%3Db=c", &[("a=b", Some("c"))]),
            ("a%26b=c%3Bd", &[("a&b", Some("c;d"))]),
            ("k=caf%C3%A9", &[("k", Some("café"))]),
            ("k=café", &[("k", Some("café"))]),
            // Repeats and undef.
            ("a&a=1", &[("a", Some("1"))]),
            ("a=1&a", &[("a", None)]),
            ("a=1&a=2&a", &[("a", None)]),
            ("a=1&a&a=2", &[("a", Some("2"))]),
            ("a=1&a=&a=3", &[("a", Some("[1||3]"))]),
            ("_dc=123&x=1", &[("_dc", Some("123")), ("x", Some("1"))]),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_urlencoded(input.as_bytes()),
                Ok(params(want)),
                "{input:?}"
            );
        }
    }

    #[test]
    fn urlencoded_refusals() {
        let names: &[&[u8]] = &[b"%C3%A9=1", b"\xc3\xa9=1", b"%FF=1", b"a=1&%80"];
        for input in names {
            assert!(
                matches!(parse_urlencoded(input), Err(RequestError::ParamName(_))),
                "{input:?}"
            );
        }
        let values: &[&[u8]] = &[
            b"k=%C3",
            b"k=%80%E2%80%A8",
            b"k=%C0%80",
            b"k=%ED%A0%80",
            b"k=%F4%90%80%80",
            b"k=%FF",
            b"k=\xff",
        ];
        for input in values {
            assert_eq!(
                parse_urlencoded(input),
                Err(RequestError::ParamValueEncoding("k".into())),
                "{input:?}"
            );
        }
    }

    #[test]
    fn form_body_refuses_what_the_forward_hop_rewrites() {
        assert_eq!(
            parse_form_body(b"vms"),
            Err(RequestError::ValuelessBodyKey("vms".into()))
        );
        assert_eq!(
            parse_form_body(b"exclude&node=pve"),
            Err(RequestError::ValuelessBodyKey("exclude".into()))
        );
        assert_eq!(
            parse_form_body(b"a=1&&b=2"),
            Err(RequestError::EmptyBodyPair)
        );
        assert_eq!(parse_form_body(b"vms="), Ok(params(&[("vms", Some(""))])));
        assert_eq!(parse_form_body(b""), Ok(Params::default()));
        assert_eq!(
            parse_body(BodyKind::Form, b"a=1;a=2"),
            Ok(params(&[("a", Some("[1|2]"))]))
        );
        assert_eq!(
            parse_body(BodyKind::Json, br#"{"a":1}"#),
            Ok(params(&[("a", Some("1"))]))
        );
        assert!(parse_body(BodyKind::Multipart, b"x").is_err());
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
    fn json_values_as_perl_sees_them() {
        let cases: &[(&str, Expected)] = &[
            ("{}", &[]),
            (" \n{\"a\":1}\r\n\t", &[("a", Some("1"))]),
            (r#"{"vmid":104}"#, &[("vmid", Some("104"))]),
            (r#"{"vmid":104.0}"#, &[("vmid", Some("104"))]),
            (r#"{"vmid":1.04e2}"#, &[("vmid", Some("104"))]),
            (r#"{"vmid":1.04E+2}"#, &[("vmid", Some("104"))]),
            (r#"{"vmid":10400e-2}"#, &[("vmid", Some("104"))]),
            (
                r#"{"vmid":103.99999999999999999999}"#,
                &[("vmid", Some("104"))],
            ),
            (r#"{"vmid":"104"}"#, &[("vmid", Some("104"))]),
            (r#"{"vmid":"104\n"}"#, &[("vmid", Some("104\n"))]),
            (r#"{"v":-0}"#, &[("v", Some("0"))]),
            (r#"{"v":-0.0}"#, &[("v", Some("0"))]),
            (r#"{"v":0e5}"#, &[("v", Some("0"))]),
            (r#"{"v":-5}"#, &[("v", Some("-5"))]),
            (r#"{"v":0.1}"#, &[("v", Some("0.1"))]),
            (r#"{"v":0.30000000000000004}"#, &[("v", Some("0.3"))]),
            (r#"{"v":2.675}"#, &[("v", Some("2.675"))]),
            (r#"{"v":-104.5}"#, &[("v", Some("-104.5"))]),
            (r#"{"v":1e20}"#, &[("v", Some("1e+20"))]),
            (r#"{"v":1e15}"#, &[("v", Some("1e+15"))]),
            (r#"{"v":1e14}"#, &[("v", Some("100000000000000"))]),
            (r#"{"v":999999999999999.9}"#, &[("v", Some("1e+15"))]),
            (r#"{"v":1.5e-5}"#, &[("v", Some("1.5e-05"))]),
            (r#"{"v":0.000123}"#, &[("v", Some("0.000123"))]),
            (
                r#"{"v":123456789.123456789}"#,
                &[("v", Some("123456789.123457"))],
            ),
            (r#"{"v":1.0000000000000002}"#, &[("v", Some("1"))]),
            (
                r#"{"v":18446744073709551615}"#,
                &[("v", Some("18446744073709551615"))],
            ),
            (
                r#"{"v":-9223372036854775808}"#,
                &[("v", Some("-9223372036854775808"))],
            ),
            (
                r#"{"v":true,"w":false}"#,
                &[("v", Some("1")), ("w", Some("0"))],
            ),
            (r#"{"vms":null}"#, &[("vms", None)]),
            (r#"{"s":"a\u0041\"\\\/\n"}"#, &[("s", Some("aA\"\\/\n"))]),
            (r#"{"s":"\ud83d\ude00"}"#, &[("s", Some("\u{1F600}"))]),
            (
                r#"{"vms":[100,"104",true,1.04e2]}"#,
                &[("vms", Some("[100|104|1|104]"))],
            ),
            (r#"{"vms":[]}"#, &[("vms", Some("[]"))]),
            (r#"{"":1}"#, &[("", Some("1"))]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_json(input.as_bytes()), Ok(params(want)), "{input}");
        }
    }

    #[test]
    fn json_refusals() {
        use RequestError as E;
        fn number(k: &'static str) -> impl Fn(&RequestError) -> bool {
            move |e| matches!(e, RequestError::JsonNumber(key, _) if key == k)
        }
        let cases: &[(&[u8], Check)] = &[
            (br#"{"vmid":1,"vmid":2}"#, &|e| {
                *e == E::DuplicateJsonKey("vmid".into())
            }),
            (br#"{"v\u006did":1,"vmid":2}"#, &|e| {
                *e == E::DuplicateJsonKey("vmid".into())
            }),
            (br#"{"a":{"b":1}}"#, &|e| *e == E::NestedJson("a".into())),
            (br#"{"a":[[1]]}"#, &|e| *e == E::NestedJson("a".into())),
            (br#"{"a":[{"b":1}]}"#, &|e| *e == E::NestedJson("a".into())),
            (br#"{"a":[1,null]}"#, &|e| {
                *e == E::JsonNullInArray("a".into())
            }),
            (br#"{"\u00e9":1}"#, &|e| matches!(e, E::ParamName(_))),
            (b"[1]", &|e| *e == E::JsonNotObject),
            (b"104", &|e| *e == E::JsonNotObject),
            (br#""x""#, &|e| *e == E::JsonNotObject),
            (b"null", &|e| *e == E::JsonNotObject),
            (b"", &|e| matches!(e, E::Json(_))),
            (b"   ", &|e| matches!(e, E::Json(_))),
            (b"{", &|e| matches!(e, E::Json(_))),
            (br#"{"a":1,}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":1} x"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":1}{}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":01}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":1.}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":.5}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":+1}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":1e}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":-}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":NaN}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":tru}"#, &|e| matches!(e, E::Json(_))),
            (br#"{a:1}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a" 1}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":"\ud800"}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":"\udc00"}"#, &|e| matches!(e, E::Json(_))),
            (br#"{"a":"\x"}"#, &|e| matches!(e, E::Json(_))),
            (b"{\"a\":\"\x01\"}", &|e| matches!(e, E::Json(_))),
            (b"{\"a\":\"\xff\"}", &|e| matches!(e, E::Json(_))),
            (b"\xef\xbb\xbf{}", &|e| matches!(e, E::Json(_))),
            (b"{\"a\":\"unterminated}", &|e| matches!(e, E::Json(_))),
            (br#"{"v":18446744073709551616}"#, &number("v")),
            (br#"{"v":-9223372036854775809}"#, &number("v")),
            (br#"{"v":1e400}"#, &number("v")),
            (br#"{"v":0e400}"#, &number("v")),
            (br#"{"v":5e-324}"#, &number("v")),
            (br#"{"v":1e-400}"#, &number("v")),
            (br#"{"v":1.7976931348623157e308}"#, &number("v")),
            (br#"{"v":1e99999}"#, &number("v")),
            (br#"{"v":103.9999999999995}"#, &number("v")),
            (br#"{"v":104.0000000000005}"#, &number("v")),
            (br#"{"v":9.999999999999995}"#, &number("v")),
            (br#"{"vms":[1,1e999]}"#, &number("vms")),
            (
                br#"{"v":1.00000000000000000000000000000000000000001}"#,
                &number("v"),
            ),
        ];
        for (input, check) in cases {
            let got = parse_json(input);
            assert!(
                got.as_ref().is_err_and(check),
                "{}: {got:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            parse_json(br#"{"vmid":1,"vmid":2}"#)
                .unwrap_err()
                .to_string(),
            "duplicate JSON key 'vmid'"
        );
    }

    #[test]
    fn perl_prints_numbers_with_15_significant_digits() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (104.0, "104"),
            (-104.5, "-104.5"),
            (0.1, "0.1"),
            (1e14, "100000000000000"),
            (1e15, "1e+15"),
            (1e100, "1e+100"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-300, "1.5e-300"),
            (123456789012345.6, "123456789012346"),
            (1.7976931348623157e308, "1.79769313486232e+308"),
            (0.30000000000000004, "0.3"),
            (2.0f64.powi(60), "1.15292150460685e+18"),
        ];
        for (value, want) in cases {
            assert_eq!(perl_nv_string(*value), *want, "{value:e}");
        }
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
