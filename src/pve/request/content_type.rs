//! The Content-Type of a POST/PUT body as pveproxy classifies it ([`body_kind`]): form,
//! JSON, multipart upload, or refused.

use super::{is_perl_space, perl_true, shown, RequestError};

/// How pveproxy reads a POST/PUT body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`, or no usable Content-Type: [`parse_form_body`](super::parse_form_body).
    Form,
    /// `application/json`: [`parse_json`](super::parse_json).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
