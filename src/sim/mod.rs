//! A simulated Proxmox VE API server for `pvegate demo` and the tests.
