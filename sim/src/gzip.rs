//! Response compression as pveproxy does it: a response whose content is known up front and
//! longer than 1024 bytes is sent with `Content-Encoding: gzip` when the request's
//! `Accept-Encoding` mentions `gzip` (`response` in pve-http-server's `AnyEvent.pm`, which uses
//! `Compress::Zlib::memGzip`). Streamed bodies are never compressed.
//!
//! The sim writes real gzip (RFC 1952) whose deflate stream uses stored blocks only: any client
//! decodes it, and the sim needs no compression library. Ratios differ from Proxmox; framing
//! and headers do not.

/// pveproxy compresses content longer than this.
pub(crate) const MIN_LEN: usize = 1024;

/// Whether an `Accept-Encoding` value lets pveproxy gzip (`m/gzip/`).
pub(crate) fn accepted(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|v| v.contains("gzip"))
}

/// Whether a response of this content type is compressed (pveproxy's `nocomp` file types:
/// images, fonts, archives).
pub(crate) fn compressible(content_type: Option<&str>) -> bool {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    !(ct.starts_with("image/")
        || ct.starts_with("audio/")
        || ct.starts_with("font/")
        || ct.contains("font-")
        || ct.contains("gzip")
        || ct.contains("compressed")
        || ct.contains("java-archive")
        || ct.contains("epub")
        || ct == "application/pdf")
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc ^ 0xFFFF_FFFF
}

/// `data` as a gzip member (stored deflate blocks).
pub(crate) fn encode(data: &[u8]) -> Vec<u8> {
    const MAX_BLOCK: usize = 65_535;
    let blocks = data.len().div_ceil(MAX_BLOCK).max(1);
    let mut out = Vec::with_capacity(data.len() + blocks * 5 + 18);
    // Header: magic, deflate, no flags, mtime 0, no extra flags, OS unix.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    let mut chunks = data.chunks(MAX_BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_text() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn stored_blocks_frame_the_data() {
        let data = vec![7u8; 70_000];
        let gz = encode(&data);
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        // Two blocks: 65535 (not final) and 4465 (final).
        assert_eq!(gz[10], 0);
        assert_eq!(u16::from_le_bytes([gz[11], gz[12]]), 65_535);
        let second = 10 + 5 + 65_535;
        assert_eq!(gz[second], 1);
        assert_eq!(u16::from_le_bytes([gz[second + 1], gz[second + 2]]), 4465);
        assert_eq!(gz.len(), 10 + 2 * 5 + 70_000 + 8);
        assert_eq!(&gz[gz.len() - 4..], &70_000u32.to_le_bytes());
    }

    #[test]
    fn accept_and_types() {
        assert!(accepted(Some("gzip, deflate, br")));
        assert!(!accepted(Some("identity")));
        assert!(!accepted(None));
        assert!(compressible(Some("application/json;charset=UTF-8")));
        assert!(!compressible(Some("image/png")));
    }
}
