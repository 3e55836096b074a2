//! The four HTTP methods pveproxy dispatches on ([`ApiMethod`]); every other method is 501.

use serde::Deserialize;

/// The four methods pveproxy serves (everything else is 501).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl ApiMethod {
    /// All four, in index order.
    pub const ALL: [ApiMethod; 4] = [
        ApiMethod::Get,
        ApiMethod::Post,
        ApiMethod::Put,
        ApiMethod::Delete,
    ];

    /// The method pveproxy would dispatch on, or `None` (pveproxy answers 501).
    pub fn from_http(m: &http::Method) -> Option<Self> {
        match *m {
            http::Method::GET => Some(ApiMethod::Get),
            http::Method::POST => Some(ApiMethod::Post),
            http::Method::PUT => Some(ApiMethod::Put),
            http::Method::DELETE => Some(ApiMethod::Delete),
            _ => None,
        }
    }

    /// Parses an upper-case method name (`GET`...), as in nested `execute` commands.
    pub fn from_name(s: &str) -> Option<Self> {
        ApiMethod::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiMethod::Get => "GET",
            ApiMethod::Post => "POST",
            ApiMethod::Put => "PUT",
            ApiMethod::Delete => "DELETE",
        }
    }

    /// The position in [`ApiMethod::ALL`].
    pub(super) fn index(self) -> usize {
        self as usize
    }
}
