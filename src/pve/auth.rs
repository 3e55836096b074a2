//! Which credential pveproxy will use for a request, and the identity written in it.
//!
//! Mirrors pve-http-server `authenticate_and_handle_request` (AnyEvent.pm) with
//! `extract_auth_value` (Formatter.pm), pve-manager `auth_handler` (HTTPServer.pm), and the
//! format checks of pve-access-control `verify_ticket` / `verify_token` / `split_tokenid` and
//! pve-common `PVE::Ticket::verify_rsa_ticket`. See `docs/pveproxy.md#credentials`.
//!
//! The identity is what the credential *claims*: pvegate does not check the ticket signature
//! or the token secret, pveproxy does (and answers 401 to a forgery). A rule that grants more
//! to an identity is therefore only as strong as pveproxy's own check, which always follows.
//! An identity that cannot be read (`None`) must get the most restrictive treatment.
//!
//! No secret is kept: the values returned here never hold the cookie, the ticket signature or
//! the token secret, so their `Debug` output is safe to log.

use std::borrow::Cow;

use http::header::{AsHeaderName, HeaderMap, AUTHORIZATION, COOKIE};

use super::request::{is_perl_space, perl_true, uri_unescape};

/// The cookie (and `Authorization` key) pveproxy reads a ticket from.
pub const TICKET_NAME: &str = "PVEAuthCookie";
/// The `Authorization` key pveproxy reads an API token from.
pub const TOKEN_NAME: &str = "PVEAPIToken";

/// The credential pveproxy will authenticate a request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A ticket (`PVEAuthCookie`, from the `Cookie` header or from `Authorization`).
    ///
    /// `user` is the user id written in the ticket (`user@realm`). It is also given for a
    /// ticket that still waits for its second factor (`tfa!user`, `u2f!user!challenge`): that is
    /// the user pveproxy runs `POST /access/tfa` as, and every other call is refused with 401.
    /// `None` when the ticket cannot be a valid Proxmox ticket for a user (bad shape, a
    /// new-style `!tfa!` challenge ticket, an invalid user id); pveproxy then answers 401.
    Ticket { user: Option<String> },
    /// An API token (`Authorization: PVEAPIToken=user@realm!name=SECRET`).
    ///
    /// `tokenid` is `user@realm!name`, or `None` when the value has no `=`, or its id does not
    /// look like `user@realm!name` (pveproxy then answers 401). The secret is not kept.
    Token { tokenid: Option<String> },
    /// No credential: pveproxy answers 401, except for its few anonymous calls
    /// (`GET /access/domains`, `GET|POST /access/ticket`, `POST /access/vncticket`,
    /// `POST /access/openid/login`, `POST /access/openid/auth-url`).
    None,
}

impl Credential {
    /// The identity: `user@realm` for a ticket, `user@realm!name` for an API token.
    pub fn identity(&self) -> Option<&str> {
        match self {
            Credential::Ticket { user } => user.as_deref(),
            Credential::Token { tokenid } => tokenid.as_deref(),
            Credential::None => None,
        }
    }

    /// The user behind the credential: `user@realm`, for a token the part before the last `!`.
    pub fn user(&self) -> Option<&str> {
        match self {
            Credential::Ticket { user } => user.as_deref(),
            Credential::Token { tokenid } => tokenid
                .as_deref()
                .and_then(|id| id.rsplit_once('!'))
                .map(|(user, _)| user),
            Credential::None => None,
        }
    }

    /// True for an API token (no CSRF token needed, `allowtoken=0` endpoints refuse it).
    pub fn is_token(&self) -> bool {
        matches!(self, Credential::Token { .. })
    }
}

/// The credential pveproxy will use.
///
/// Mirrored: the ticket is looked for in `Cookie` first, then in `Authorization`; an API token
/// is looked for in `Authorization` only when no ticket was found. Repeated headers are joined
/// with `", "` (HTTP::Headers). A value is found by the regex `(?:^|\s)NAME(?:=| )([^;]*)`
/// (first match; so `a=1;PVEAuthCookie=T` has no ticket but `a=1; PVEAuthCookie=T` has, and
/// `PVEAPIToken u@pve!t=S` works) and is then percent-decoded. A value that is empty or `"0"`
/// counts as not found, as in Perl. A ticket that is found is used even if it is invalid: the
/// token is then ignored.
///
/// This is the credential pveproxy *reads*; on its anonymous calls (see [`Credential::None`])
/// it does not authenticate at all and the call runs without a user, whatever is sent.
pub fn credential(headers: &HeaderMap) -> Credential {
    let cookie = joined_header(headers, COOKIE);
    let authorization = joined_header(headers, AUTHORIZATION);

    let mut ticket = cookie
        .as_deref()
        .and_then(|c| extract_auth_value(c, TICKET_NAME));
    if !ticket.as_deref().is_some_and(perl_true) {
        ticket = authorization
            .as_deref()
            .and_then(|a| extract_auth_value(a, TICKET_NAME));
    }
    if let Some(ticket) = ticket.as_deref().filter(|t| perl_true(t)) {
        return Credential::Ticket {
            user: ticket_user(ticket),
        };
    }
    let token = authorization
        .as_deref()
        .and_then(|a| extract_auth_value(a, TOKEN_NAME));
    match token.as_deref().filter(|t| perl_true(t)) {
        Some(token) => Credential::Token {
            tokenid: token_id(token),
        },
        None => Credential::None,
    }
}

/// A header as `HTTP::Headers->header($name)` returns it in scalar context: every value of the
/// (case-insensitive) name joined with `", "`, as raw bytes; `None` if the header is absent.
pub fn joined_header<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<Cow<'_, [u8]>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first.as_bytes()));
    };
    let mut out = first.as_bytes().to_vec();
    for value in std::iter::once(second).chain(values) {
        out.extend_from_slice(b", ");
        out.extend_from_slice(value.as_bytes());
    }
    Some(Cow::Owned(out))
}

/// Formatter.pm `extract_auth_value`: `($header =~ /(?:^|\s)\Q$key\E(?:=| )([^;]*)/)[0]`,
/// then `uri_unescape` (only when the raw value is true).
fn extract_auth_value<'h>(header: &'h [u8], key: &str) -> Option<Cow<'h, [u8]>> {
    if !perl_true(header) {
        return None;
    }
    let key = key.as_bytes();
    // Every position where the key starts (a header is short: looking for its first byte
    // beats setting up a substring searcher).
    let start = memchr::memchr_iter(key[0], header).find(|&j| {
        header[j..].starts_with(key)
            && (j == 0 || is_perl_space(header[j - 1]))
            && matches!(header.get(j + key.len()), Some(b'=' | b' '))
    })?;
    let value = &header[start + key.len() + 1..];
    let value = &value[..value.iter().position(|b| *b == b';').unwrap_or(value.len())];
    // Most values (token ids, tickets) hold no `%`: they are their own unescaping.
    Some(
        if perl_true(value) && memchr::memchr(b'%', value).is_some() {
            Cow::Owned(uri_unescape(value))
        } else {
            Cow::Borrowed(value)
        },
    )
}

/// Removes one final `"\n"`, where Perl's `$` also matches.
fn before_final_newline(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\n").unwrap_or(s)
}

/// Perl `\S` on a byte string.
fn is_non_space(b: &u8) -> bool {
    !is_perl_space(*b)
}

/// The user a ticket names, as `verify_ticket` would read it (signature and age not checked).
fn ticket_user(ticket: &[u8]) -> Option<String> {
    // verify_rsa_ticket: m/^(PVE:\S+)::([^:\s]+)$/
    let t = before_final_newline(ticket);
    let last_colon = t.iter().rposition(|b| *b == b':')?;
    let signature = &t[last_colon + 1..];
    if signature.is_empty() || !signature.iter().all(is_non_space) {
        return None;
    }
    let plain = t[..last_colon].strip_suffix(b":")?;
    let after_prefix = plain.strip_prefix(b"PVE:")?;
    if after_prefix.is_empty() || !after_prefix.iter().all(is_non_space) {
        return None;
    }
    // m/^PVE:(?:(\S+):)?([A-Z0-9]{8})$/ (a ticket without data names no user)
    let (data, timestamp) = after_prefix.split_at(after_prefix.len().checked_sub(8)?);
    if !timestamp
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return None;
    }
    let data = data.strip_suffix(b":").filter(|d| !d.is_empty())?;
    let data = uri_unescape(data);

    // verify_ticket: the TFA variants, then verify_username.
    let d = before_final_newline(&data);
    let username: &[u8] = if d.starts_with(b"!tfa!") && !d.contains(&b'\n') {
        return None; // new-style TFA challenge: no user name in the ticket
    } else if let Some((user, _challenge)) = d.strip_prefix(b"u2f!").and_then(u2f_parts) {
        user
    } else if let Some(user) = d.strip_prefix(b"tfa!").filter(|u| !u.contains(&b'\n')) {
        user
    } else {
        &data
    };
    valid_username(username).then(|| String::from_utf8(username.to_vec()).ok())?
}

/// `m{^u2f!([^!]+)!([0-9a-zA-Z/.=_\-+]+)$}` after the `u2f!` prefix.
fn u2f_parts(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let bang = rest.iter().position(|b| *b == b'!')?;
    let (user, challenge) = (&rest[..bang], &rest[bang + 1..]);
    let challenge_ok = !challenge.is_empty()
        && challenge
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"/.=_-+".contains(b));
    (!user.is_empty() && challenge_ok).then_some((user, challenge))
}

/// `verify_username`: 3 to 64 bytes, `m!^([^\s:/]+)\@([A-Za-z][A-Za-z0-9\.\-_]+)$!`.
///
/// Stricter than Perl in one point: a final newline (which Perl's `$` accepts) is refused, as
/// no such user can exist and pveproxy fails the login afterwards.
fn valid_username(name: &[u8]) -> bool {
    if !(3..=64).contains(&name.len()) || name.contains(&b'\n') {
        return false;
    }
    match name.iter().rposition(|b| *b == b'@') {
        Some(at) => valid_user_part(&name[..at]) && valid_realm(&name[at + 1..]),
        None => false,
    }
}

/// `[^\s:/]+`
fn valid_user_part(user: &[u8]) -> bool {
    !user.is_empty()
        && user
            .iter()
            .all(|b| is_non_space(b) && *b != b':' && *b != b'/')
}

/// `[A-Za-z][A-Za-z0-9\.\-_]+` (realm and token name alike).
fn valid_realm(realm: &[u8]) -> bool {
    realm.len() >= 2
        && realm[0].is_ascii_alphabetic()
        && realm[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

/// The token id of an API token value, as `verify_token` and `split_tokenid` read it.
fn token_id(token: &[u8]) -> Option<String> {
    // verify_token: /^(.*)=(.*)$/ (greedy, so the id ends at the last '='; `.` is not "\n")
    let t = before_final_newline(token);
    if t.contains(&b'\n') {
        return None;
    }
    let eq = t.iter().rposition(|b| *b == b'=')?;
    let id = &t[..eq];
    // split_tokenid: /^((user)@(realm))!(realm)$/
    let bang = id.iter().rposition(|b| *b == b'!')?;
    let (userid, name) = (&id[..bang], &id[bang + 1..]);
    let at = userid.iter().rposition(|b| *b == b'@')?;
    let ok = valid_user_part(&userid[..at]) && valid_realm(&userid[at + 1..]) && valid_realm(name);
    ok.then(|| String::from_utf8(id.to_vec()).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(cookies: &[&[u8]], authorizations: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for c in cookies {
            map.append(COOKIE, HeaderValue::from_bytes(c).unwrap());
        }
        for a in authorizations {
            map.append(AUTHORIZATION, HeaderValue::from_bytes(a).unwrap());
        }
        map
    }

    fn ticket(user: Option<&str>) -> Credential {
        Credential::Ticket {
            user: user.map(str::to_string),
        }
    }

    fn token(id: Option<&str>) -> Credential {
        Credential::Token {
            tokenid: id.map(str::to_string),
        }
    }

    #[test]
    fn which_credential_pveproxy_uses() {
        let root = || ticket(Some("root@pam"));
        let cases: Vec<(Vec<&str>, Vec<&str>, Credential)> = vec![
            (vec![], vec![], Credential::None),
            // The cookie, percent-encoded as the GUI sets it, or raw.
            (
                vec!["PVEAuthCookie=PVE%3Aroot%40pam%3A65A1B2C3%3A%3Ac2lnbmF0dXJl"],
                vec![],
                root(),
            ),
            (vec!["PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"], vec![], root()),
            (vec!["PVEAuthCookie PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"], vec![], root()),
            // Only found at the start or after whitespace.
            (
                vec!["a=1;PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec![],
                Credential::None,
            ),
            (
                vec!["a=1; PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec![],
                root(),
            ),
            (vec!["x=a PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"], vec![], root()),
            (
                vec!["a=1;\tPVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec![],
                root(),
            ),
            (
                vec!["XPVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec![],
                Credential::None,
            ),
            (
                vec!["PVEAuthCookieX=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec![],
                Credential::None,
            ),
            (
                vec!["pveauthcookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec![],
                Credential::None,
            ),
            // First match wins; the value runs to the next `;`.
            (
                vec!["PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl; PVEAuthCookie=PVE:alice@pve:65A1B2C3::c2ln"],
                vec![],
                root(),
            ),
            (
                vec!["PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl ; x=1"],
                vec![],
                ticket(None),
            ),
            // Repeated Cookie headers are joined with ", ".
            (
                vec!["a=1", "PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec![],
                root(),
            ),
            (
                vec!["PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl", "b=1"],
                vec![],
                ticket(None),
            ),
            // Authorization carries a ticket too; the cookie wins over it.
            (
                vec![],
                vec!["PVEAuthCookie=PVE:alice@pve:65A1B2C3::c2ln"],
                ticket(Some("alice@pve")),
            ),
            (
                vec!["PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec!["PVEAuthCookie=PVE:alice@pve:65A1B2C3::c2ln"],
                root(),
            ),
            // API tokens, with `=` or a space, anywhere after whitespace.
            (
                vec![],
                vec!["PVEAPIToken=u@pve!tk=S3CR3T"],
                token(Some("u@pve!tk")),
            ),
            (
                vec![],
                vec!["PVEAPIToken u@pve!tk=S3CR3T"],
                token(Some("u@pve!tk")),
            ),
            (
                vec![],
                vec!["Bearer x, PVEAPIToken=u@pve!tk=S3CR3T"],
                token(Some("u@pve!tk")),
            ),
            (
                vec![],
                vec!["Bearer x", "PVEAPIToken=u@pve!tk=S3CR3T"],
                token(Some("u@pve!tk")),
            ),
            (
                vec![],
                vec!["PVEAPIToken=u%40pve%21tk%3DS3CR3T"],
                token(Some("u@pve!tk")),
            ),
            (
                vec![],
                vec!["PVEAPIToken=root@pam!tok-1.x_y=S"],
                token(Some("root@pam!tok-1.x_y")),
            ),
            (
                vec![],
                vec!["PVEAPIToken=a@b@pve!xy=S"],
                token(Some("a@b@pve!xy")),
            ),
            (
                vec![],
                vec!["PVEAPIToken=u@pve!tk=S%0A"],
                token(Some("u@pve!tk")),
            ),
            (vec![], vec!["XPVEAPIToken=u@pve!tk=S"], Credential::None),
            (vec![], vec!["PVEAPITokenu@pve!tk=S"], Credential::None),
            // A token only counts from Authorization.
            (vec!["PVEAPIToken=u@pve!tk=S"], vec![], Credential::None),
            // Token shapes pveproxy rejects with 401: no id, nothing kept.
            (vec![], vec!["PVEAPIToken=S3CR3T"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve!tk"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve!tk=S=T"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve=S"], token(None)),
            (vec![], vec!["PVEAPIToken=u@p!t=S"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve!1t=S"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve!tk!x=S"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve!t=S"], token(None)),
            (vec![], vec!["PVEAPIToken=u:x@pve!t=S"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve!tk%0A=S"], token(None)),
            (vec![], vec!["PVEAPIToken=u@pve!tk=S%0AT"], token(None)),
            // A ticket anywhere beats a token, even an invalid ticket.
            (
                vec!["PVEAuthCookie=PVE:root@pam:65A1B2C3::c2lnbmF0dXJl"],
                vec!["PVEAPIToken=u@pve!tk=S"],
                root(),
            ),
            (
                vec!["PVEAuthCookie=garbage"],
                vec!["PVEAPIToken=u@pve!tk=S"],
                ticket(None),
            ),
            (
                vec![],
                vec!["PVEAPIToken=u@pve!tk=S, PVEAuthCookie=PVE:alice@pve:65A1B2C3::c2ln"],
                ticket(Some("alice@pve")),
            ),
            // ... but an empty or "0" ticket counts as none (Perl truthiness).
            (
                vec!["PVEAuthCookie="],
                vec!["PVEAPIToken=u@pve!tk=S"],
                token(Some("u@pve!tk")),
            ),
            (
                vec!["PVEAuthCookie=;x"],
                vec!["PVEAPIToken=u@pve!tk=S"],
                token(Some("u@pve!tk")),
            ),
            (
                vec!["PVEAuthCookie=0"],
                vec!["PVEAPIToken=u@pve!tk=S"],
                token(Some("u@pve!tk")),
            ),
            (
                vec!["PVEAuthCookie=%30"],
                vec!["PVEAPIToken=u@pve!tk=S"],
                token(Some("u@pve!tk")),
            ),
            (
                vec!["PVEAuthCookie=0"],
                vec!["PVEAuthCookie=PVE:alice@pve:65A1B2C3::c2ln"],
                ticket(Some("alice@pve")),
            ),
            (vec!["PVEAuthCookie=0"], vec![], Credential::None),
            (vec![], vec!["PVEAPIToken=0"], Credential::None),
            (vec!["0"], vec!["0"], Credential::None),
        ];
        for (cookies, auths, want) in cases {
            let c: Vec<&[u8]> = cookies.iter().map(|s| s.as_bytes()).collect();
            let a: Vec<&[u8]> = auths.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(
                credential(&headers(&c, &a)),
                want,
                "cookie {cookies:?} auth {auths:?}"
            );
        }
    }

    #[test]
    fn user_written_in_a_ticket() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"PVE:root@pam:65A1B2C3::sig", Some("root@pam")),
            (b"PVE:a@b@pve:65A1B2C3::sig", Some("a@b@pve")),
            (b"PVE:root@pam:65A1B2C3::sig\n", Some("root@pam")),
            (b"PVE:r%6Fot@pam:65A1B2C3::sig", Some("root@pam")),
            (b"PVE:\xc3\xbc@pve:65A1B2C3::sig", Some("\u{fc}@pve")),
            // Partial TFA: the user pveproxy runs POST /access/tfa as.
            (b"PVE:tfa!root@pam:65A1B2C3::sig", Some("root@pam")),
            (b"PVE:tfa!root@pam%0A:65A1B2C3::sig", Some("root@pam")),
            (b"PVE:u2f!root@pam!abc+/=:65A1B2C3::sig", Some("root@pam")),
            (b"PVE:u2f!root@pam!verified:65A1B2C3::sig", Some("root@pam")),
            // New-style TFA challenge ticket: no user name in it.
            (b"PVE:!tfa!%7B%22a%22%3A1%7D:65A1B2C3::sig", None),
            // `:` is escaped in the user field, but a user id cannot hold one.
            (b"PVE:x%3Ay@pve:65A1B2C3::sig", None),
            (b"PVE:root@pam%0A:65A1B2C3::sig", None),
            (b"PVE:ro:65A1B2C3::sig", None),
            (b"PVE:r@p:65A1B2C3::sig", None),
            (b"PVE:root@1am:65A1B2C3::sig", None),
            (b"PVE:root@pam:65a1b2c3::sig", None),
            (b"PVE:root@pam:65A1B2C::sig", None),
            (b"PVE:root@pam:65A1B2C34::sig", None),
            (b"PVE:65A1B2C3::sig", None),
            (b"PVE::65A1B2C3::sig", None),
            (b"PVE:root@pam:65A1B2C3::", None),
            (b"PVE:root@pam:65A1B2C3:sig", None),
            (b"PVE:root@pam:65A1B2C3::s g", None),
            (b"PVE:root pam@pve:65A1B2C3::sig", None),
            (b"PMG:root@pam:65A1B2C3::sig", None),
            (b"PVEVNC:root@pam:65A1B2C3::sig", None),
            (b"pve:root@pam:65A1B2C3::sig", None),
            (b"PVE:u2f!root@pam:65A1B2C3::sig", Some("u2f!root@pam")),
            (b"PVE:\xff@pve:65A1B2C3::sig", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                ticket_user(raw).as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let long = format!("PVE:{}@pve:65A1B2C3::sig", "u".repeat(61));
        assert_eq!(ticket_user(long.as_bytes()), None);
        let max = format!("PVE:{}@pve:65A1B2C3::sig", "u".repeat(60));
        assert_eq!(ticket_user(max.as_bytes()).map(|u| u.len()), Some(64));
    }

    #[test]
    fn identity_and_user() {
        let cases: &[(Credential, Option<&str>, Option<&str>)] = &[
            (ticket(Some("root@pam")), Some("root@pam"), Some("root@pam")),
            (ticket(None), None, None),
            (token(Some("u@pve!tk")), Some("u@pve!tk"), Some("u@pve")),
            (token(Some("a@b@pve!x")), Some("a@b@pve!x"), Some("a@b@pve")),
            (token(None), None, None),
            (Credential::None, None, None),
        ];
        for (cred, identity, user) in cases {
            assert_eq!(cred.identity(), *identity, "{cred:?}");
            assert_eq!(cred.user(), *user, "{cred:?}");
        }
        assert!(token(None).is_token() && !ticket(None).is_token());
    }

    #[test]
    fn secrets_are_not_kept() {
        let h = headers(&[], &[b"PVEAPIToken=u@pve!tk=0123-S3CR3T-4567"]);
        let cred = credential(&h);
        assert!(!format!("{cred:?}").contains("S3CR3T"));
        let h = headers(&[], &[b"PVEAPIToken=S3CR3T-PASTED-ALONE"]);
        assert!(!format!("{:?}", credential(&h)).contains("S3CR3T"));
        let h = headers(&[b"PVEAuthCookie=PVE:root@pam:65A1B2C3::U0lHTkFUVVJF"], &[]);
        let shown = format!("{:?}", credential(&h));
        assert!(
            !shown.contains("U0lHTkFUVVJF") && !shown.contains("65A1B2C3"),
            "{shown}"
        );
        let h = headers(&[b"PVEAuthCookie=S3CR3T-GARBAGE"], &[]);
        assert!(!format!("{:?}", credential(&h)).contains("S3CR3T"));
    }

    #[test]
    fn joined_header_like_http_headers() {
        let h = headers(&[b"a=1", b"b=2"], &[]);
        assert_eq!(joined_header(&h, COOKIE).as_deref(), Some(&b"a=1, b=2"[..]));
        assert_eq!(
            joined_header(&h, "cookie").as_deref(),
            Some(&b"a=1, b=2"[..])
        );
        assert_eq!(joined_header(&h, AUTHORIZATION), None);
        let mut ct = HeaderMap::new();
        ct.append(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ct.append(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        assert_eq!(
            joined_header(&ct, http::header::CONTENT_TYPE).as_deref(),
            Some(&b"application/json, text/plain"[..])
        );
    }
}
