//! Red team: corpora of request spellings that try to change a readonly guest past pvegate,
//! judged against independent readers of what pveproxy would do.
//!
//! One test binary: each file beside this one is a module.

#[path = "../common/mod.rs"]
mod common;

mod bypass;
mod bypass_framing;
