//! Guest sets: one VMID, a sorted list of VMIDs, or "every guest" ([`GuestSet`]).

use std::fmt;

/// A Proxmox guest id (VM or container), 100..=999_999_999.
pub type Vmid = u32;

/// Every guest a request touches.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum GuestSet {
    /// The request names no guest.
    #[default]
    None,
    /// The listed guests (sorted, deduplicated, never empty).
    Some(Vec<Vmid>),
    /// The request acts on every guest (an omitted bulk list, a node shell...).
    All,
}

impl GuestSet {
    /// A set holding exactly one guest.
    pub fn one(vmid: Vmid) -> Self {
        GuestSet::Some(vec![vmid])
    }

    /// Adds a guest, keeping the list sorted and free of duplicates (no-op for `All`).
    pub fn insert(&mut self, vmid: Vmid) {
        match self {
            GuestSet::None => {
                // Room for a few: scans add guests one by one, and a second insert into a
                // one-element Vec reallocates (glibc hands out the same chunk size for 4).
                let mut list = Vec::with_capacity(4);
                list.push(vmid);
                *self = GuestSet::Some(list);
            }
            GuestSet::Some(list) => {
                // Lists and scans mostly name guests in ascending order: append those
                // without a search.
                if list.last().is_some_and(|&last| last < vmid) {
                    list.push(vmid);
                } else if let Err(pos) = list.binary_search(&vmid) {
                    list.insert(pos, vmid);
                }
            }
            GuestSet::All => {}
        }
    }

    /// Marks the set as "every guest".
    pub fn set_all(&mut self) {
        *self = GuestSet::All;
    }

    /// Adds every guest of `other` to `self` (`All` absorbs everything).
    pub fn union(&mut self, other: &GuestSet) {
        match other {
            GuestSet::None => {}
            GuestSet::All => self.set_all(),
            GuestSet::Some(list) => self.extend(list.iter().copied()),
        }
    }

    /// True when the set is "every guest".
    pub fn is_all(&self) -> bool {
        matches!(self, GuestSet::All)
    }

    /// True when no guest is named.
    pub fn is_empty(&self) -> bool {
        matches!(self, GuestSet::None)
    }

    /// True when `vmid` is affected (always true for `All`).
    pub fn contains(&self, vmid: Vmid) -> bool {
        match self {
            GuestSet::None => false,
            GuestSet::Some(list) => list.binary_search(&vmid).is_ok(),
            GuestSet::All => true,
        }
    }

    /// The listed guests; empty for `None` and for `All`.
    pub fn listed(&self) -> &[Vmid] {
        match self {
            GuestSet::Some(list) => list,
            _ => &[],
        }
    }
}

impl Extend<Vmid> for GuestSet {
    /// Adds many guests at once: appended, then sorted and deduplicated once (a pool or a
    /// storage of thousands of guests, in any order, costs O(n log n), not one shift each).
    fn extend<I: IntoIterator<Item = Vmid>>(&mut self, iter: I) {
        match self {
            GuestSet::All => {}
            GuestSet::None => {
                let mut list: Vec<Vmid> = iter.into_iter().collect();
                if !list.is_empty() {
                    sort_dedup(&mut list);
                    *self = GuestSet::Some(list);
                }
            }
            GuestSet::Some(list) => {
                list.extend(iter);
                sort_dedup(list);
            }
        }
    }
}

/// Sorted and free of duplicates, sorting only when the list is not already.
fn sort_dedup(list: &mut Vec<Vmid>) {
    if !list.is_sorted_by(|a, b| a < b) {
        list.sort_unstable();
        list.dedup();
    }
}

impl FromIterator<Vmid> for GuestSet {
    fn from_iter<I: IntoIterator<Item = Vmid>>(iter: I) -> Self {
        let mut set = GuestSet::None;
        set.extend(iter);
        set
    }
}

impl fmt::Display for GuestSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestSet::None => f.write_str("none"),
            GuestSet::All => f.write_str("all guests"),
            GuestSet::Some(list) => {
                for (i, v) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
        }
    }
}
