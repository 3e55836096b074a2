//! pvegate: a policy-enforcing reverse proxy for the Proxmox VE API.
#![forbid(unsafe_code)]

pub mod pve;
pub mod sim;
