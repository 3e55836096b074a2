//! The test harness itself: the simulated Proxmox VE API (`pvegate-sim`) behaves like Proxmox
//! where the other tests rely on it.
//!
//! One test binary: each file beside this one is a module.

mod sim;
