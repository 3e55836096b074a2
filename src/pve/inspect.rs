//! Parsed request -> [`Operation`]: the endpoint, its action and every guest it touches.

use super::{Action, GuestSet};

/// Which route of the API a request reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A catalogue endpoint, by path template (e.g. `/nodes/{node}/qemu/{vmid}/status/stop`).
    Known(&'static str),
    /// Under `/api2/` but not in the catalogue (newer Proxmox than the schema).
    Unknown,
    /// Outside `/api2/` (web UI pages, static files).
    Static,
}

/// What a request does: the typed facts the policy decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub route: Route,
    pub action: Action,
    pub guests: GuestSet,
}

/// A request that cannot be judged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InspectError {
    /// pveproxy would reject it, or could read it differently: 400.
    #[error("{0}")]
    Malformed(String),
}

/// Turns a parsed request into an [`Operation`].
pub fn inspect(
    _method: &http::Method,
    _segments: &[String],
    _params: &super::Params,
) -> Result<Operation, InspectError> {
    Err(InspectError::Malformed("not implemented".into()))
}
