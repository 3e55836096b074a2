//! Oracles: the endpoint catalogue against the Proxmox API schema it was generated from
//! (every endpoint and method has an action, routes back to itself, and every guest-bearing
//! parameter is extracted).
//!
//! One test binary: each file beside this one is a module.

mod coverage;
