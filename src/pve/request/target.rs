//! The request-target as pveproxy routes it: absolute- or origin-form, percent-decoded once,
//! then split into the API format and path segments ([`parse_target`]).

use super::{uri_unescape, RequestError};

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

/// One decoded path segment. Segments of API paths are short (`nodes`, `qemu`, `104`,
/// `status`), and a `CompactString` keeps up to 24 bytes inline: reading a path allocates
/// nothing per segment.
pub type Segment = compact_str::CompactString;

/// A request-target as pveproxy routes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api2/<format>/...`: decoded, non-empty path segments after the format.
    Api {
        format: ApiFormat,
        segments: Vec<Segment>,
    },
    /// Anything outside `/api2` (web UI pages and static files): the decoded path.
    Other { path: String },
}

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
    let scan = Scan::of(raw.as_bytes())?;
    if scan.hash {
        return Err(RequestError::Fragment);
    }
    // pveproxy: `if ($url =~ m|^[^/]*@|)` -> 400 "invalid url".
    if scan.at_before_slash {
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

    // The first `?` of the target is the path's: an absolute URL's authority ends before any.
    let start = raw.len() - path_and_query.len();
    let (raw_path, query) = match scan.query {
        Some(at) => (&raw[start..at], Some(&raw[at + 1..])),
        None => (path_and_query, None),
    };
    if !scan.percent {
        // Nothing to decode: the path is its own decoding, and the scan found only visible
        // ASCII in it (no NUL, newline or other control character to look for).
        return Ok((route(raw_path, Decoded::Visible)?, query));
    }
    let decoded = String::from_utf8(uri_unescape(raw_path.as_bytes()))
        .map_err(|_| RequestError::PathNotUtf8)?;
    Ok((route(&decoded, Decoded::Any)?, query))
}

/// What one pass over a raw request-target found (bytes outside visible ASCII end it early).
struct Scan {
    /// A `#` anywhere.
    hash: bool,
    /// An `@` before the first `/`.
    at_before_slash: bool,
    /// Where the first `?` is.
    query: Option<usize>,
    /// A `%` before the first `?`.
    percent: bool,
}

/// The bytes [`Scan`] stops at: 1 outside visible ASCII, 2 `#`, 3 `@`, 4 `/`, 5 `?`, 6 `%`.
const CLASS: [u8; 256] = {
    let mut table = [1u8; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        table[b] = 0;
        b += 1;
    }
    table[b'#' as usize] = 2;
    table[b'@' as usize] = 3;
    table[b'/' as usize] = 4;
    table[b'?' as usize] = 5;
    table[b'%' as usize] = 6;
    table
};

impl Scan {
    fn of(raw: &[u8]) -> Result<Scan, RequestError> {
        let mut scan = Scan {
            hash: false,
            at_before_slash: false,
            query: None,
            percent: false,
        };
        let mut slash = false;
        for (i, &b) in raw.iter().enumerate() {
            match CLASS[usize::from(b)] {
                0 => {}
                1 => return Err(RequestError::TargetCharacter),
                2 => scan.hash = true,
                3 => scan.at_before_slash |= !slash,
                4 => slash = true,
                5 => {
                    if scan.query.is_none() {
                        scan.query = Some(i);
                    }
                }
                _ => scan.percent |= scan.query.is_none(),
            }
        }
        Ok(scan)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// What is known about the characters of a decoded path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decoded {
    /// Only visible ASCII (the raw path had nothing to decode).
    Visible,
    /// Anything percent-decoding can give.
    Any,
}

/// Routes a decoded path: pveproxy's `$path =~ m/^\Q$base_uri\E/` then `$split_abs_uri`, then
/// RESTHandler's `grep { length($_) > 0 } split('\/+', $rel_uri)`.
fn route(decoded: &str, chars: Decoded) -> Result<Target, RequestError> {
    let checked = chars == Decoded::Visible;
    if !checked && decoded.contains('\0') {
        return Err(RequestError::PathNul);
    }
    if !decoded.starts_with("/api2") {
        if !checked {
            if decoded.contains('\n') {
                return Err(RequestError::PathNewline);
            }
            if decoded.chars().any(char::is_control) {
                return Err(RequestError::PathControl);
            }
        }
        return Ok(Target::Other {
            path: decoded.to_owned(),
        });
    }

    // Perl's `$` also matches before one final "\n"; `.` matches anything but "\n".
    let body = decoded.strip_suffix('\n').unwrap_or(decoded);
    if !checked {
        if body.contains('\n') {
            return Err(RequestError::PathNewline);
        }
        if body.chars().any(char::is_control) {
            return Err(RequestError::PathControl);
        }
    }
    let rest = &body["/api2".len()..];
    let after_slashes = rest.trim_start_matches('/');
    if after_slashes.len() == rest.len() {
        return Err(RequestError::ApiPrefix); // `/api2`, `/api2foo`
    }
    let name_end = after_slashes
        .bytes()
        .position(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .unwrap_or(after_slashes.len());
    let (name, tail) = after_slashes.split_at(name_end);
    let name_ok = name.len() >= 2 && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !name_ok || !(tail.is_empty() || tail.starts_with('/')) {
        return Err(RequestError::ApiPrefix);
    }
    let format =
        ApiFormat::from_name(name).ok_or_else(|| RequestError::UnknownFormat(name.to_string()))?;
    Ok(Target::Api {
        format,
        segments: split_segments(tail),
    })
}

/// The non-empty `/`-separated segments of `tail` (empty or starting with `/`), in one pass.
fn split_segments(tail: &str) -> Vec<Segment> {
    // Allocated once: `tail` has no more segments than slashes (a collected iterator would
    // start small and grow for most API paths).
    let bytes = tail.as_bytes();
    let mut segments = Vec::with_capacity(bytes.iter().filter(|&&b| b == b'/').count());
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'/' {
            if i > start {
                segments.push(Segment::new(&tail[start..i]));
            }
            start = i + 1;
        }
    }
    if bytes.len() > start {
        segments.push(Segment::new(&tail[start..]));
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(format: ApiFormat, segments: &[&str]) -> Target {
        Target::Api {
            format,
            segments: segments.iter().map(|s| Segment::new(s)).collect(),
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

    /// The reading before the one-pass scan (one check per pass, every decoded path checked
    /// for control characters), kept as the reference the scan must agree with.
    fn reference(raw: &str) -> Result<(Target, Option<&str>), RequestError> {
        if raw.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(RequestError::TargetCharacter);
        }
        if raw.contains('#') {
            return Err(RequestError::Fragment);
        }
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
        let decoded = String::from_utf8(uri_unescape(raw_path.as_bytes()))
            .map_err(|_| RequestError::PathNotUtf8)?;
        let target = route(&decoded, Decoded::Any)?;
        if let Target::Api { segments, .. } = &target {
            let split: Vec<Segment> = decoded
                .split('/')
                .skip(3)
                .filter(|s| !s.is_empty())
                .map(Segment::new)
                .collect();
            if !decoded.contains("//") && !decoded.ends_with('\n') {
                assert_eq!(*segments, split, "{raw}");
            }
        }
        Ok((target, query))
    }

    #[test]
    fn the_one_pass_reading_agrees_with_the_reference() {
        // Every target of up to four pieces from these, in every order: the scan's classes
        // (`#`, `@`, `/`, bytes outside visible ASCII), encodings of each, and API prefixes.
        let pieces = [
            "/",
            "//",
            "/api2",
            "/api2/json",
            "api2",
            "json",
            "x",
            "104",
            "?",
            "?a=%2F",
            "#",
            "@",
            "%",
            "%2F",
            "%0A",
            "%00",
            "%09",
            "%7F",
            "%C3%A9",
            "%FF",
            "%40",
            "%23",
            "%3F",
            " ",
            "\t",
            "é",
            "\u{7f}",
            "http://pve",
            "https://u@pve",
            "HTTPS://h:8006",
        ];
        let mut checked = 0;
        for len in 1..=4u32 {
            for n in 0..pieces.len().pow(len) {
                let indices: Vec<usize> = (0..len)
                    .map(|d| n / pieces.len().pow(d) % pieces.len())
                    .collect();
                // A scheme only leads a target; elsewhere it adds refusals of one kind.
                if indices[1..].iter().any(|&i| pieces[i].starts_with("http")) {
                    continue;
                }
                let raw: String = indices.iter().map(|&i| pieces[i]).collect();
                assert_eq!(parse_target(&raw), reference(&raw), "{raw:?}");
                checked += 1;
            }
        }
        assert!(checked > 500_000, "{checked}");
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
}
