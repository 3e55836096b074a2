//! The endpoint catalogue generated from the Proxmox VE API schema.
