//! pveproxy's framing rules, applied before any parameter is read: the methods it serves, its
//! header limits, the `Connection`, `Transfer-Encoding`, `Content-Length` and `Content-Type`
//! combinations it reads one way only, and the body each request may carry ([`BodyPlan`]).

use http::{header, HeaderMap, HeaderName, Method};

use crate::pve::request::{self, BodyKind};
use crate::pve::{ApiFormat, Segment, Target};

/// Most header lines pvegate passes on (pveproxy's limit is 64; pvegate adds one).
pub const MAX_HEADERS: usize = 62;
/// Most header bytes pvegate passes on (pveproxy's limit is 8 KiB; pvegate adds one header).
pub const MAX_HEADER_BYTES: usize = 8192 - 128;

/// Largest non-upload body pveproxy accepts (and so the largest pvegate buffers).
pub const MAX_BODY: usize = 512 * 1024;

/// A request pvegate will not pass on, found while reading it (before any policy applies);
/// `crate::reject` turns it into the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The request's API format, once known.
    pub format: Option<ApiFormat>,
    /// What is wrong with it.
    pub kind: RefusalKind,
}

/// What is wrong with a refused request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefusalKind {
    /// A method Proxmox does not serve (answered 501).
    #[error("method '{0}' not available (Proxmox serves GET, POST, PUT and DELETE only)")]
    Method(Method),
    /// Something pveproxy could read differently, or not at all (answered 400).
    #[error("{0}")]
    Malformed(String),
    /// An upload without a `Content-Length` (answered 411).
    #[error("uploads need a Content-Length (Proxmox does not accept chunked bodies)")]
    LengthRequired,
    /// A parameter body over [`MAX_BODY`] (answered 413).
    #[error("request body over {} KiB (Proxmox's limit for API parameters)", MAX_BODY / 1024)]
    TooLarge,
    /// Read, but pvegate cannot tell every guest it touches (answered 403).
    #[error("{0}")]
    Unjudgeable(String),
}

impl Refusal {
    /// A request that could be read two ways, or not at all.
    pub fn bad(format: Option<ApiFormat>, message: impl Into<String>) -> Self {
        Refusal {
            format,
            kind: RefusalKind::Malformed(message.into()),
        }
    }
}

/// How a request's body is to be handled.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body may be sent.
    Empty,
    /// Parameters: buffered, parsed and forwarded byte for byte.
    Buffer(BodyKind),
    /// The storage upload endpoint: streamed, never buffered (its parameters are in the query).
    Stream,
}

fn is_upload(method: &Method, segments: &[Segment]) -> bool {
    method == Method::POST
        && segments.len() == 5
        && segments[0] == "nodes"
        && segments[2] == "storage"
        && segments[4] == "upload"
}

/// Step one: method, target and framing. Returns the parsed target, raw query and body plan.
pub fn read_head<'a>(
    method: &Method,
    raw_target: &'a str,
    headers: &HeaderMap,
) -> Result<(Target, Option<&'a str>, BodyPlan), Refusal> {
    if !matches!(
        *method,
        Method::GET | Method::POST | Method::PUT | Method::DELETE
    ) {
        return Err(Refusal {
            format: None,
            kind: RefusalKind::Method(method.clone()),
        });
    }
    let (target, query) =
        request::parse_target(raw_target).map_err(|e| Refusal::bad(None, e.to_string()))?;
    let format = match &target {
        Target::Api { format, .. } => Some(*format),
        Target::Other { .. } => None,
    };
    let facts = HeadFacts::read(headers);
    // pveproxy drops a request with more than 64 header lines or 8 KiB of headers without an
    // answer; leave room for the X-Forwarded-For pvegate adds, and refuse clearly instead.
    if headers.len() > MAX_HEADERS || facts.bytes > MAX_HEADER_BYTES {
        return Err(Refusal::bad(
            format,
            format!(
                "{} header lines / {} bytes of headers: Proxmox accepts at most 64 lines and 8 KiB",
                headers.len(),
                facts.bytes
            ),
        ));
    }
    // Headers named in `Connection` are stripped before forwarding, so Proxmox would never see
    // them while pvegate judged them (`Connection: Cookie` would let a cookie Proxmox never
    // sees choose the identity). Only the connection options real clients send are accepted.
    match facts.connection {
        Connection::Fine => {}
        Connection::Unreadable => {
            return Err(Refusal::bad(
                format,
                "Connection header is not readable text",
            ))
        }
        Connection::Names(token) => {
            return Err(Refusal::bad(
                format,
                format!("Connection names '{token}': only close, keep-alive, upgrade and te are accepted (a header named there would be judged but never reach Proxmox)"),
            ));
        }
    }
    // Perl's HTTP::Headers (pveproxy) reads `_` as `-` in header names: `Content_Type` is its
    // Content-Type and `Content_Length` its Content-Length. No real client sends such names.
    if let Some(name) = facts.underscore {
        return Err(Refusal::bad(
            format,
            format!(
                "header name '{name}' contains '_', which Proxmox reads as '-': rename or drop it"
            ),
        ));
    }
    let te = facts.transfer_encodings > 0;
    if te && (!facts.chunked_only || facts.content_lengths > 0) {
        return Err(Refusal::bad(
            format,
            "Transfer-Encoding other than a single 'chunked', or together with Content-Length",
        ));
    }
    let length = match facts.content_lengths {
        0 => None,
        _ => content_length(headers).map_err(|m| Refusal::bad(format, m))?,
    };
    let has_body = te || length.is_some_and(|l| l > 0);
    let plan = match (&target, method) {
        (_, &Method::GET | &Method::DELETE) if has_body => {
            return Err(Refusal::bad(
                format,
                format!(
                    "Proxmox refuses a body on {method}: send the parameters in the query string"
                ),
            ));
        }
        (_, &Method::GET | &Method::DELETE) => BodyPlan::Empty,
        (Target::Other { .. }, _) => {
            return Err(Refusal::bad(
                None,
                format!("Proxmox serves only GET outside /api2, not {method}"),
            ));
        }
        (Target::Api { segments, .. }, _) if is_upload(method, segments) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            if !matches!(request::body_kind(ct), Ok(BodyKind::Multipart)) {
                return Err(Refusal::bad(
                    format,
                    "an upload must be multipart/form-data",
                ));
            }
            if length.is_none() {
                return Err(Refusal {
                    format,
                    kind: RefusalKind::LengthRequired,
                });
            }
            BodyPlan::Stream
        }
        (Target::Api { .. }, _) => {
            let ct = match facts.content_types {
                0 => None,
                1 => Some(
                    headers[header::CONTENT_TYPE]
                        .to_str()
                        .map_err(|_| Refusal::bad(format, "Content-Type is not readable text"))?,
                ),
                _ => return Err(Refusal::bad(format, "more than one Content-Type header")),
            };
            match request::body_kind(ct).map_err(|e| Refusal::bad(format, e.to_string()))? {
                BodyKind::Multipart => {
                    return Err(Refusal::bad(
                        format,
                        "multipart bodies are accepted only by the storage upload endpoint",
                    ))
                }
                kind => {
                    if length.is_some_and(|l| l > MAX_BODY as u64) {
                        return Err(too_large(format));
                    }
                    BodyPlan::Buffer(kind)
                }
            }
        }
    };
    Ok((target, query, plan))
}

/// What the framing rules need from the header lines, gathered in one pass over them (a
/// lookup by name hashes the name; most requests carry five to ten lines).
struct HeadFacts {
    /// Bytes of header lines as pveproxy counts them (name, value, `: ` and CRLF).
    bytes: usize,
    connection: Connection,
    /// The first header name holding `_`.
    underscore: Option<HeaderName>,
    transfer_encodings: usize,
    /// Every `Transfer-Encoding` line is exactly `chunked`.
    chunked_only: bool,
    content_lengths: usize,
    content_types: usize,
}

/// What the `Connection` lines say.
enum Connection {
    Fine,
    Unreadable,
    /// The first option that is not one real clients send.
    Names(String),
}

impl HeadFacts {
    fn read(headers: &HeaderMap) -> Self {
        let mut f = HeadFacts {
            bytes: 0,
            connection: Connection::Fine,
            underscore: None,
            transfer_encodings: 0,
            chunked_only: true,
            content_lengths: 0,
            content_types: 0,
        };
        for (name, value) in headers {
            f.bytes += name.as_str().len() + value.len() + 4;
            if *name == header::CONNECTION {
                if matches!(f.connection, Connection::Fine) {
                    f.connection = connection_options(value);
                }
            } else if *name == header::TRANSFER_ENCODING {
                f.transfer_encodings += 1;
                f.chunked_only &= value.as_bytes().eq_ignore_ascii_case(b"chunked");
            } else if *name == header::CONTENT_LENGTH {
                f.content_lengths += 1;
            } else if *name == header::CONTENT_TYPE {
                f.content_types += 1;
            } else if f.underscore.is_none() && name.as_str().as_bytes().contains(&b'_') {
                f.underscore = Some(name.clone());
            }
        }
        f
    }
}

fn connection_options(value: &http::HeaderValue) -> Connection {
    let Ok(text) = value.to_str() else {
        return Connection::Unreadable;
    };
    for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !["close", "keep-alive", "upgrade", "te"]
            .iter()
            .any(|ok| token.eq_ignore_ascii_case(ok))
        {
            return Connection::Names(token.to_string());
        }
    }
    Connection::Fine
}

/// A body over [`MAX_BODY`], found from its `Content-Length` or while reading it.
pub fn too_large(format: Option<ApiFormat>) -> Refusal {
    Refusal {
        format,
        kind: RefusalKind::TooLarge,
    }
}

fn content_length(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Content-Length header".into());
    }
    first
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| "Content-Length is not a number".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(method: Method, target: &str, headers: &[(&str, &str)]) -> Result<BodyPlan, Refusal> {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        read_head(&method, target, &map).map(|(_, _, plan)| plan)
    }

    fn kind(r: Result<BodyPlan, Refusal>) -> RefusalKind {
        r.unwrap_err().kind
    }

    #[test]
    fn the_body_plan_follows_method_and_endpoint() {
        let stop = "/api2/json/nodes/pve/qemu/104/status/stop";
        assert_eq!(head(Method::GET, stop, &[]).unwrap(), BodyPlan::Empty);
        assert_eq!(
            head(Method::POST, stop, &[("content-length", "3")]).unwrap(),
            BodyPlan::Buffer(BodyKind::Form)
        );
        let upload = "/api2/json/nodes/pve/storage/local/upload";
        let multipart = ("content-type", "multipart/form-data; boundary=x");
        assert_eq!(
            head(Method::POST, upload, &[multipart, ("content-length", "9")]).unwrap(),
            BodyPlan::Stream
        );
    }

    #[test]
    fn each_framing_refusal_has_its_kind() {
        let stop = "/api2/json/nodes/pve/qemu/104/status/stop";
        assert_eq!(
            kind(head(Method::PATCH, stop, &[])),
            RefusalKind::Method(Method::PATCH)
        );
        let upload = "/api2/json/nodes/pve/storage/local/upload";
        let multipart = ("content-type", "multipart/form-data; boundary=x");
        let chunked = ("transfer-encoding", "chunked");
        assert_eq!(
            kind(head(Method::POST, upload, &[multipart, chunked])),
            RefusalKind::LengthRequired
        );
        let big = (MAX_BODY + 1).to_string();
        assert_eq!(
            kind(head(Method::POST, stop, &[("content-length", &big)])),
            RefusalKind::TooLarge
        );
        for headers in [
            &[("content-length", "1"), ("content-length", "1")][..],
            &[("content-length", "+1")],
            &[chunked, ("content-length", "1")],
            &[("connection", "cookie")],
            &[("content_type", "application/json")],
            &[multipart, ("content-length", "1")],
        ] {
            assert!(
                matches!(
                    kind(head(Method::POST, stop, headers)),
                    RefusalKind::Malformed(_)
                ),
                "{headers:?}"
            );
        }
        assert!(matches!(
            kind(head(Method::GET, stop, &[("content-length", "1")])),
            RefusalKind::Malformed(m) if m.contains("query string")
        ));
        assert!(matches!(
            kind(head(Method::POST, "/pve2/js/x.js", &[])),
            RefusalKind::Malformed(m) if m.contains("only GET outside /api2")
        ));
    }

    #[test]
    fn header_limits_leave_room_for_the_header_pvegate_adds() {
        let stop = "/api2/json/nodes/pve/qemu/104/status/current";
        let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("x-h{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert!(head(Method::GET, stop, &many[..MAX_HEADERS]).is_ok());
        assert!(matches!(
            kind(head(Method::GET, stop, &many)),
            RefusalKind::Malformed(m) if m.contains("at most 64 lines")
        ));
    }
}
