//! The policy: which guests are protected and what may be done to them.
//!
//! [`model`] is the file format, [`compile`] turns files into a [`Policy`] (validating
//! everything, with file:line errors), [`decide`] is the pure decision function, and [`store`]
//! holds the live policy behind an `ArcSwap` and reloads it.

pub mod compile;
pub mod decide;
pub mod diff;
mod host;
pub mod judge;
pub mod model;
pub mod show;
pub mod store;

pub use compile::{Access, GuestRule, Policy};
pub use decide::{Decision, DenyReason, Verdict};
pub use judge::{Judgement, Mode};
pub use store::PolicyStore;
