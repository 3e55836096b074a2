//! Proxmox VE API knowledge, free of HTTP framework types: how pveproxy reads a request
//! ([`request`], with one file per reader: target, content type, form/query, JSON), the methods
//! it serves ([`method`]), the endpoint catalogue ([`catalogue`]), guest references
//! ([`guests`]), the action taxonomy ([`action`]) and the step that turns a parsed request into
//! an [`Operation`] ([`inspect`](mod@inspect)).
//!
//! Imports point one way: `catalogue` uses `action` and `method`; `action` uses `method` only.

pub mod action;
pub mod auth;
pub mod catalogue;
pub mod framing;
pub mod guests;
pub mod host;
pub mod inspect;
pub mod method;
pub mod reader;
pub mod request;

pub use action::Action;
pub use auth::Credential;
pub use guests::{GuestSet, Vmid};
pub use inspect::{inspect, InspectError, Judged, Operation, Route};
pub use request::{ApiFormat, BodyKind, ParamValue, Params, RequestError, Segment, Target};
