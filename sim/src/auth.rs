//! Credentials as pveproxy reads them: tickets, CSRF prevention tokens, API tokens, VNC
//! tickets.
//!
//! Formats follow pve-common `PVE/Ticket.pm`; the signature is an HMAC-SHA256 with a key
//! of the sim rather than Proxmox's RSA key (the shape matters, not the algorithm):
//! - ticket `PVE:<userid, ':' as %3A>:<8 hex time>::<base64 signature>`
//! - CSRF token `<8 hex time>:<base64 HMAC without padding>`
//! - VNC ticket `PVEVNC:<8 hex time>::<base64 signature>` bound to user, auth path and port

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use percent_encoding::percent_decode_str;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Tickets live two hours (`$ticket_lifetime` in AccessControl.pm).
pub(crate) const TICKET_LIFETIME: u64 = 2 * 3600;
/// VNC tickets are accepted from 20 s before to 40 s after their time stamp.
const VNC_TICKET_LIFETIME: u64 = 40;

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The sim's signing key.
pub(crate) struct Keys {
    key: hmac::Key,
}

impl Keys {
    /// A fresh random key.
    pub fn generate() -> std::io::Result<Self> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| std::io::Error::other("sim: no randomness for the ticket key"))?;
        Ok(Keys {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    fn sign(&self, data: &str) -> hmac::Tag {
        hmac::sign(&self.key, data.as_bytes())
    }

    fn verify(&self, data: &str, tag: &[u8]) -> bool {
        hmac::verify(&self.key, data.as_bytes(), tag).is_ok()
    }

    /// A ticket for `user`, stamped `ts`.
    pub fn ticket(&self, user: &str, ts: u64) -> String {
        let plain = format!("PVE:{}:{:08X}", user.replace(':', "%3A"), ts);
        let sig = STANDARD.encode(self.sign(&plain).as_ref());
        format!("{plain}::{sig}")
    }

    /// The user of a valid, unexpired ticket.
    pub fn verify_ticket(&self, ticket: &str, now: u64) -> Option<String> {
        let (plain, sig) = ticket.split_once("::")?;
        let rest = plain.strip_prefix("PVE:")?;
        let (user, ts) = rest.rsplit_once(':')?;
        let ts = parse_ts(ts)?;
        let sig = STANDARD.decode(sig).ok()?;
        if !self.verify(plain, &sig) || !fresh(ts, now, 300, TICKET_LIFETIME) {
            return None;
        }
        Some(user.replace("%3A", ":"))
    }

    /// A CSRF prevention token for `user`, stamped `ts`.
    pub fn csrf(&self, user: &str, ts: u64) -> String {
        let ts = format!("{ts:08X}");
        let sig = STANDARD_NO_PAD.encode(self.sign(&format!("{ts}:{user}")).as_ref());
        format!("{ts}:{sig}")
    }

    /// Whether `token` is a valid CSRF prevention token for `user`.
    pub fn verify_csrf(&self, user: &str, token: &str, now: u64) -> bool {
        let Some((ts_hex, sig)) = token.split_once(':') else {
            return false;
        };
        let Some(ts) = parse_ts(ts_hex) else {
            return false;
        };
        let Ok(sig) = STANDARD_NO_PAD.decode(sig.trim_end_matches('=')) else {
            return false;
        };
        self.verify(&format!("{ts_hex}:{user}"), &sig) && fresh(ts, now, 300, TICKET_LIFETIME)
    }

    /// A VNC ticket for `user` on `authpath` (`/vms/104`, `/nodes/pve`) and `port`.
    pub fn vnc_ticket(&self, user: &str, authpath: &str, port: &str, ts: u64) -> String {
        let plain = format!("PVEVNC:{ts:08X}");
        let sig = STANDARD.encode(
            self.sign(&format!("{plain}:{user}:{authpath}:{port}"))
                .as_ref(),
        );
        format!("{plain}::{sig}")
    }

    /// Whether `ticket` is a VNC ticket this sim issued for exactly these values.
    pub fn verify_vnc_ticket(
        &self,
        ticket: &str,
        user: &str,
        authpath: &str,
        port: &str,
        now: u64,
    ) -> bool {
        let Some((plain, sig)) = ticket.split_once("::") else {
            return false;
        };
        let Some(ts) = plain.strip_prefix("PVEVNC:").and_then(parse_ts) else {
            return false;
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            return false;
        };
        self.verify(&format!("{plain}:{user}:{authpath}:{port}"), &sig)
            && fresh(ts, now, 20, VNC_TICKET_LIFETIME)
    }
}

fn parse_ts(s: &str) -> Option<u64> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

fn fresh(ts: u64, now: u64, early: u64, lifetime: u64) -> bool {
    ts <= now + early && now <= ts + lifetime
}

/// `extract_auth_value` of pve-http-server `Formatter.pm`:
/// `/(?:^|\s)\Q$key\E(?:=| )([^;]*)/`, first match, then percent-decoded.
pub(crate) fn extract_auth_value(header: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = header[from..].find(key) {
        let at = from + i;
        let starts_ok = at == 0
            || header[..at]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace);
        let after = &header[at + key.len()..];
        if starts_ok && (after.starts_with('=') || after.starts_with(' ')) {
            let value = &after[1..];
            let value = value.split(';').next().unwrap_or("");
            return Some(percent_decode_str(value).decode_utf8_lossy().into_owned());
        }
        from = at + key.len().max(1);
    }
    None
}

/// The credential pveproxy would pick, in its order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A `PVEAuthCookie` ticket (from `Cookie`, else from `Authorization`).
    Ticket(String),
    /// A `PVEAPIToken` value `user@realm!name=secret`.
    Token(String),
    /// Nothing usable.
    None,
}

/// Picks the credential: cookie ticket, then `Authorization: PVEAuthCookie=`, then the API
/// token (only when no ticket was found at all). Repeated headers are joined with `", "`.
pub(crate) fn credential(cookie: Option<&str>, authorization: Option<&str>) -> Credential {
    let ticket = cookie
        .and_then(|c| extract_auth_value(c, "PVEAuthCookie"))
        .filter(|t| !t.is_empty())
        .or_else(|| {
            authorization
                .and_then(|a| extract_auth_value(a, "PVEAuthCookie"))
                .filter(|t| !t.is_empty())
        });
    if let Some(t) = ticket {
        return Credential::Ticket(t);
    }
    match authorization.and_then(|a| extract_auth_value(a, "PVEAPIToken")) {
        Some(t) if !t.is_empty() => Credential::Token(t),
        _ => Credential::None,
    }
}

/// Who a request is authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `user@realm`.
    pub user: String,
    /// `user@realm!name` for API tokens.
    pub token: Option<String>,
}

impl Identity {
    /// The user as it appears in UPIDs and `vncproxy` replies (the token id for tokens).
    pub fn upid_user(&self) -> &str {
        self.token.as_deref().unwrap_or(&self.user)
    }
}

/// Checks an API token value against `tokens` (`user@realm!name`, secret). The id is
/// everything up to the last `=`, as in `verify_token`.
pub(crate) fn verify_token(value: &str, tokens: &[(String, String)]) -> Result<Identity, String> {
    let Some((id, secret)) = value.rsplit_once('=') else {
        return Err("invalid token value!".into());
    };
    let Some((user, _name)) = id.split_once('!') else {
        return Err(format!("invalid API token ID '{id}'"));
    };
    match tokens.iter().find(|(t, _)| t == id) {
        None => Err(format!("no such token '{id}' for user '{user}'")),
        Some((_, s)) if s == secret => Ok(Identity {
            user: user.to_owned(),
            token: Some(id.to_owned()),
        }),
        Some(_) => Err("invalid token value!".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_follows_the_loose_regex() {
        assert_eq!(
            extract_auth_value("PVEAuthCookie=abc", "PVEAuthCookie"),
            Some("abc".into())
        );
        assert_eq!(
            extract_auth_value("a=1; PVEAuthCookie=PVE%3Aroot%40pam; b=2", "PVEAuthCookie"),
            Some("PVE:root@pam".into())
        );
        assert_eq!(
            extract_auth_value("a=1;PVEAuthCookie=x", "PVEAuthCookie"),
            None
        );
        assert_eq!(
            extract_auth_value("XPVEAuthCookie=x", "PVEAuthCookie"),
            None
        );
        assert_eq!(
            extract_auth_value("PVEAPIToken u@pve!t=S", "PVEAPIToken"),
            Some("u@pve!t=S".into())
        );
        assert_eq!(
            extract_auth_value("Bearer x, PVEAPIToken=u@pve!t=S", "PVEAPIToken"),
            Some("u@pve!t=S".into())
        );
    }

    #[test]
    fn precedence_cookie_then_header_then_token() {
        assert_eq!(
            credential(Some("PVEAuthCookie=T1"), Some("PVEAuthCookie=T2")),
            Credential::Ticket("T1".into())
        );
        assert_eq!(
            credential(None, Some("PVEAuthCookie=T2; PVEAPIToken=x")),
            Credential::Ticket("T2".into())
        );
        assert_eq!(
            credential(Some("other=1"), Some("PVEAPIToken=u@pam!t=s")),
            Credential::Token("u@pam!t=s".into())
        );
        assert_eq!(credential(None, None), Credential::None);
    }

    #[test]
    fn tickets_and_csrf_round_trip() {
        let k = Keys::generate().unwrap();
        let t = k.ticket("root@pam", 0x6000_0000);
        assert!(t.starts_with("PVE:root@pam:60000000::"));
        assert_eq!(k.verify_ticket(&t, 0x6000_0010), Some("root@pam".into()));
        assert_eq!(k.verify_ticket(&t, 0x6000_0000 + TICKET_LIFETIME + 1), None);
        let forged = t.replace("root@pam", "admin@pve");
        assert_eq!(k.verify_ticket(&forged, 0x6000_0010), None);
        let c = k.csrf("root@pam", 0x6000_0000);
        assert!(k.verify_csrf("root@pam", &c, 0x6000_0001));
        assert!(!k.verify_csrf("other@pve", &c, 0x6000_0001));
        let v = k.vnc_ticket("root@pam", "/vms/104", "5900", 100);
        assert!(k.verify_vnc_ticket(&v, "root@pam", "/vms/104", "5900", 110));
        assert!(!k.verify_vnc_ticket(&v, "root@pam", "/vms/105", "5900", 110));
    }

    #[test]
    fn tokens_split_at_the_last_equals() {
        let tokens = vec![("root@pam!tofu".to_owned(), "s=e".to_owned())];
        let id = verify_token("root@pam!tofu=s=e", &tokens);
        assert!(id.is_err());
        let tokens = vec![("root@pam!tofu".to_owned(), "sec".to_owned())];
        let id = verify_token("root@pam!tofu=sec", &tokens).unwrap();
        assert_eq!(id.user, "root@pam");
        assert_eq!(id.upid_user(), "root@pam!tofu");
        assert!(verify_token("root@pam!tofu=bad", &tokens).is_err());
    }
}
