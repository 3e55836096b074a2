//! The multipart upload body of `POST /nodes/{node}/storage/{storage}/upload`, read from what
//! the recorder kept: the leading fields and the file part's header are in the first 64 KiB,
//! the closing delimiter in the last 1 KiB. The file itself is never held in memory.
//!
//! Like pveproxy's `file_upload_multipart`, fields before the file are parameters, and the
//! file part must be named `filename` and carry `filename="…"`.

use super::params::Params;

/// What an upload body carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upload {
    /// The form fields before the file (`content`, `checksum`, …).
    pub fields: Params,
    /// The file name from the file part's `Content-Disposition`.
    pub filename: String,
    /// The size of the file data.
    pub size: u64,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// `name` and `filename` of a `Content-Disposition: form-data; …` value.
fn disposition(value: &str) -> (Option<String>, Option<String>, Option<String>) {
    let mut parts = value.split(';').map(str::trim);
    let disp = parts.next().map(str::to_owned);
    let mut name = None;
    let mut filename = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"').to_owned();
            match k.trim() {
                "name" => name = Some(v),
                "filename" => filename = Some(v),
                _ => {}
            }
        }
    }
    (disp, name, filename)
}

/// Parses the upload from the body's `prefix` and `tail`; `total` is the body length.
pub(crate) fn parse(
    prefix: &[u8],
    tail: &[u8],
    total: u64,
    boundary: &str,
) -> Result<Upload, String> {
    let delim = format!("--{boundary}");
    let mut fields = Params::new();
    let mut pos = find(prefix, delim.as_bytes()).ok_or("upload failed")?;
    loop {
        let after = pos + delim.len();
        let rest = &prefix[after..];
        if rest.starts_with(b"--") {
            return Err("upload failed".into());
        }
        let head_start = after + if rest.starts_with(b"\r\n") { 2 } else { 1 };
        let head_len = find(&prefix[head_start..], b"\r\n\r\n").ok_or("upload failed")?;
        let head = String::from_utf8_lossy(&prefix[head_start..head_start + head_len]);
        let data_start = head_start + head_len + 4;
        let (mut disp, mut name, mut filename) = (None, None, None);
        for line in head.lines() {
            if let Some((k, v)) = line.split_once(':') {
                if k.trim().eq_ignore_ascii_case("content-disposition") {
                    (disp, name, filename) = disposition(v.trim());
                }
            }
        }
        if disp.as_deref() != Some("form-data") || name.is_none() {
            return Err("wrong content disposition in multipart - abort upload".into());
        }
        let name = name.unwrap_or_default();
        if let Some(filename) = filename {
            if name != "filename" {
                return Err("wrong field name for file upload - abort upload".into());
            }
            let close = format!("\r\n{delim}");
            let in_tail = rfind(tail, close.as_bytes()).ok_or("upload failed")?;
            let end = total - tail.len() as u64 + in_tail as u64;
            let size = end.checked_sub(data_start as u64).ok_or("upload failed")?;
            return Ok(Upload {
                fields,
                filename,
                size,
            });
        }
        let close = format!("\r\n{delim}");
        let value_len = find(&prefix[data_start..], close.as_bytes()).ok_or("upload failed")?;
        let value =
            String::from_utf8_lossy(&prefix[data_start..data_start + value_len]).into_owned();
        fields.insert(name, Some(value));
        pos = data_start + value_len + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamsExt;

    #[test]
    fn parses_fields_and_file_size() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\niso\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"a.iso\"\r\n\
Content-Type: application/octet-stream\r\n\r\n0123456789\r\n--XyZ--\r\n";
        let u = parse(body, body, body.len() as u64, "XyZ").unwrap();
        assert_eq!(u.fields.str("content"), Some("iso"));
        assert_eq!(u.filename, "a.iso");
        assert_eq!(u.size, 10);
    }

    #[test]
    fn refuses_a_file_not_named_filename() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nx\r\n--b--\r\n";
        assert!(parse(body, body, body.len() as u64, "b").is_err());
    }
}
