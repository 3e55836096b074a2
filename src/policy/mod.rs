//! The policy: which guests are protected and what may be done to them.
//!
//! One concept per file: [`model`] is the file format, [`rule`] one compiled guest rule
//! ([`Access`], [`rule::ActionSet`], [`rule::Exempt`]), `policy` the compiled [`Policy`] and its
//! lookups, [`compile`] turns files into a [`Policy`] (validating everything, with file:line
//! [`PolicyError`]s), [`decide`] is the pure decision function (`host` its `host.access`
//! part), [`judge`] applies enforce/shadow mode, [`diff`] finds what a reload takes away,
//! [`show`] prints the policy in words, and [`store`] holds the live policy behind an
//! `ArcSwap` and reloads it. [`approve`] says which permitted requests need a human's approval.

pub mod approve;
pub mod compile;
pub mod decide;
pub mod diff;
pub mod error;
mod host;
pub mod judge;
pub mod model;
pub mod resolve;
// The type's own file is named after it, like the folder that holds its neighbours.
#[allow(clippy::module_inception)]
mod policy;
pub mod rule;
pub mod selector;
pub mod show;
pub mod sticky;
pub mod store;

pub use approve::ApprovalNeed;
pub use decide::{Decision, DenyReason, Verdict};
pub use error::PolicyError;
pub use judge::{Judgement, Mode};
pub use policy::Policy;
pub use rule::{Access, GuestRule};
pub use store::PolicyStore;

/// The hash map of the decision path's lookups (guest → rule, guest → selector matches,
/// name → guests): foldhash, several times faster than the standard SipHash on a `u32`, and
/// seeded per process, so inventory data cannot be shaped into collisions ahead of time.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
