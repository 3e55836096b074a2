//! Query strings and form bodies as pveproxy's `decode_urlencoded` reads them
//! ([`parse_urlencoded`], [`parse_form_body`]).

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use super::{hex_val, perl_true, shown, ParamValue, Params, RequestError};

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

/// `s/\+/ /g` then [`uri_unescape`](super::uri_unescape), in one pass and one allocation: a `+` is never part of a
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::request::tests::{params, Expected};
    use crate::pve::request::{parse_body, uri_unescape, BodyKind};

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
}
