//! JSON bodies as pveproxy's `decode_json` (JSON::XS) and Perl's stringification read them
//! ([`parse_json`]): the object reader and the emulation of JSON::XS's number reader and
//! Perl's `%.15g` output.

use std::collections::BTreeMap;

use super::{shown, ParamValue, Params, RequestError};

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
    use crate::pve::request::tests::{params, Expected};

    /// A test on a refusal.
    type Check<'a> = &'a dyn Fn(&RequestError) -> bool;

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
}
