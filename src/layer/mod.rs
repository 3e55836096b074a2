//! The tower layers of the request pipeline, one per file: [`inspect`] turns a request into
//! typed facts (or refuses what cannot be read as pveproxy would), [`authorize`] applies the
//! policy, [`forward`] sends what is left to Proxmox.

pub mod authorize;
pub mod forward;
pub mod inspect;

pub use authorize::{Authorize, AuthorizeLayer};
pub use forward::Forward;
pub use inspect::{Inspect, InspectLayer, Inspected};
