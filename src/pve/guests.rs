//! Guest references: a VMID, a set of VMIDs, or "every guest".

/// A Proxmox guest id (VM or container), 100..=999_999_999.
pub type Vmid = u32;

/// Every guest a request touches.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum GuestSet {
    /// Sorted, without duplicates; empty when the request names no guest.
    #[default]
    None,
    /// The listed guests (sorted, deduplicated, never empty).
    Some(Vec<Vmid>),
    /// The request acts on every guest (an omitted bulk list, a node shell...).
    All,
}
