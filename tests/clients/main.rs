//! Real clients through pvegate: proxmoxer (Python), the Terraform/OpenTofu bpg provider (its
//! traffic replayed), the Proxmox web UI in headless Chromium. Their non-Rust parts live
//! beside this file.
//!
//! One test binary: each file beside this one is a module.

#[path = "../common/mod.rs"]
mod common;

mod proxmoxer;
mod registry;
mod terraform;
mod webui;
