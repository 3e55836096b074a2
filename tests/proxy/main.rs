//! Proxy behaviour: the real stack (in process) and the real `pvegate` binary in front of the
//! simulated Proxmox, from single requests to production conditions and the commands users
//! run.
//!
//! One test binary: each file beside this one is a module.

#[path = "../common/mod.rs"]
mod common;

mod approvals;
mod audit_policy;
mod cli;
mod cluster;
mod families;
mod forwarding;
mod gate;
mod host_access;
mod idle;
mod inventory;
mod mcp;
mod ops;
mod production;
mod tryout;
