//! Selector rules meet an inventory snapshot: [`Resolved`] is, for one policy and one
//! snapshot, the selector rules each guest matches, computed once when either changes so
//! that a decision is a hash lookup. Also which rules govern a guest (the precedence), and
//! which guests a rule protects (to know whose configs the inventory must read). It also
//! holds the `Uses` index of the same snapshot (who is in a pool or an HA group, on a
//! storage, using a mapping or a device), so that resolving a stored selection or a
//! dependency change is a lookup, not a walk of every guest.
//!
//! For each of its lists (a pool's members, a storage's users...) it also keeps the
//! *representatives*: the lowest member of each distinct set of governing rules
//! ([`Governing`]). Two guests governed by the same rules
//! get the same verdict, the same approvals and the same sticky check for any action and
//! identity, so judging the representatives in ascending order refuses exactly when judging
//! every member would, and names the same (lowest refusing) guest. A pool of 1,431 guests
//! under three selector rules is judged as a handful of guests.
//!
//! Precedence, for one guest:
//! 1. a rule by `vmid = N` alone (no selector) governs that guest alone, as before;
//! 2. otherwise every rule that matches applies — the selector rules whose selectors pick
//!    it and the `vmids` range holding it — and a request is refused when any of them
//!    refuses it (the most restrictive wins; each rule keeps its own exemptions);
//! 3. a guest no rule matches gets `[settings] default_access`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::FastMap as HashMap;

use super::rule::GuestRule;
use super::Policy;
use crate::inventory::Snapshot;
use crate::pve::{Action, Vmid};

/// The selector matches of one snapshot under one policy.
#[derive(Debug)]
pub struct Resolved {
    /// Guest -> indexes of the selector rules it matches (file order).
    matches: Matches,
    /// Who uses what in `snapshot`.
    uses: Uses,
    /// The snapshot it was built from.
    pub snapshot: Arc<Snapshot>,
    /// Identifies the policy it was built for (its address in the live store).
    pub policy_key: usize,
    /// Unique per `Resolved` in this process: an operation whose guests were expanded with
    /// this view names it, so representatives are never used with another view.
    pub id: u64,
}

/// Guest -> the selector rules it matches, in file order.
type Matches = HashMap<Vmid, Box<[u32]>>;

/// The source of [`Resolved::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Resolved {
    /// The selector rules `vmid` matches (empty for a guest the snapshot does not have).
    #[inline]
    pub fn matches(&self, vmid: Vmid) -> &[u32] {
        self.matches.get(&vmid).map_or(&[], |m| m)
    }

    /// The guests of `pool`, sorted ([`Snapshot::pool_members`], indexed).
    pub fn pool_members(&self, pool: &str) -> &[Vmid] {
        Group::members(&self.uses.pools, pool)
    }

    /// The representatives of `pool` (see the module doc): a sorted subset of
    /// [`Resolved::pool_members`] that judges like all of them.
    pub fn pool_judged(&self, pool: &str) -> &[Vmid] {
        Group::reps(&self.uses.pools, pool)
    }

    /// The guests whose HA resource is in group `group`, sorted (indexed).
    pub fn ha_group_members(&self, group: &str) -> &[Vmid] {
        Group::members(&self.uses.ha_groups, group)
    }

    /// The representatives of HA group `group`.
    pub fn ha_group_judged(&self, group: &str) -> &[Vmid] {
        Group::reps(&self.uses.ha_groups, group)
    }

    /// The guests whose configs were read and that use `storage`, sorted
    /// ([`Snapshot::on_storage`], indexed).
    pub fn on_storage(&self, storage: &str) -> &[Vmid] {
        Group::members(&self.uses.storages, storage)
    }

    /// The representatives of [`Resolved::on_storage`].
    pub fn on_storage_judged(&self, storage: &str) -> &[Vmid] {
        Group::reps(&self.uses.storages, storage)
    }

    /// The guests whose configs were read and that use mapping `key` (`pci/<id>`) or one of
    /// its devices raw, sorted ([`Snapshot::using_mapping`], indexed).
    pub fn using_mapping(&self, key: &str) -> &[Vmid] {
        Group::members(&self.uses.mappings, key)
    }

    /// The representatives of [`Resolved::using_mapping`].
    pub fn using_mapping_judged(&self, key: &str) -> &[Vmid] {
        Group::reps(&self.uses.mappings, key)
    }

    /// The guests whose configs were read and that use the host PCI device `address` raw or
    /// through a mapping they name that maps it, sorted.
    pub fn pci_owners(&self, address: &str) -> &[Vmid] {
        Group::members(&self.uses.pci, address)
    }

    /// The same for the host USB device `device` (a `host=` value).
    pub fn usb_owners(&self, device: &str) -> &[Vmid] {
        Group::members(&self.uses.usb, device)
    }

    /// Roughly the bytes the `Uses` index holds on the heap (keys, lists and table slots).
    pub fn uses_heap_bytes(&self) -> usize {
        self.uses.heap_bytes()
    }
}

/// Who uses what in one snapshot, each list sorted and free of duplicates and kept with its
/// representatives (the module doc). It lives in
/// [`Resolved`], built with it from one immutable snapshot, and never in the [`Snapshot`]
/// itself: a snapshot's fields are patched after forwarded writes (`inventory::gate`), and
/// an index beside them could miss a patch and let a pool's new member escape its rules. A
/// patched snapshot is a new one and gets a new `Resolved`.
#[derive(Debug, Default)]
struct Uses {
    /// Pool -> its guests.
    pools: HashMap<String, Group>,
    /// HA group -> the guests whose HA resource uses it.
    ha_groups: HashMap<String, Group>,
    /// Storage -> the guests with a disk on it.
    storages: HashMap<String, Group>,
    /// Mapping key (`pci/<id>`) -> the guests naming it or using one of its devices raw.
    mappings: HashMap<String, Group>,
    /// PCI address -> the guests passing it through raw or through a mapping they name.
    pci: HashMap<String, Group>,
    /// USB device -> the same.
    usb: HashMap<String, Group>,
}

/// The guests of one name in the index (a pool's members, a storage's users...) and their
/// representatives.
#[derive(Debug, Default)]
struct Group {
    /// Every member, sorted.
    members: Box<[Vmid]>,
    /// The lowest member of each distinct [`Governing`], sorted (filled in once the
    /// matches are known).
    reps: Box<[Vmid]>,
}

impl Group {
    fn members<'a>(map: &'a HashMap<String, Group>, key: &str) -> &'a [Vmid] {
        map.get(key).map_or(&[], |g| &g.members)
    }

    fn reps<'a>(map: &'a HashMap<String, Group>, key: &str) -> &'a [Vmid] {
        map.get(key).map_or(&[], |g| &g.reps)
    }

    fn of(lists: Building) -> HashMap<String, Group> {
        finish(lists)
            .into_iter()
            .map(|(k, members)| {
                (
                    k,
                    Group {
                        members,
                        reps: Box::default(),
                    },
                )
            })
            .collect()
    }
}

/// Lists being collected, keyed by name.
type Building = HashMap<String, Vec<Vmid>>;

fn add(map: &mut Building, key: &str, vmid: Vmid) {
    match map.get_mut(key) {
        Some(list) => list.push(vmid),
        None => {
            map.insert(key.to_string(), vec![vmid]);
        }
    }
}

fn finish(map: Building) -> HashMap<String, Box<[Vmid]>> {
    map.into_iter()
        .map(|(k, mut list)| {
            list.sort_unstable();
            list.dedup();
            (k, list.into_boxed_slice())
        })
        .collect()
}

impl Uses {
    /// Indexes the uses of `snap` (the pools come from the guest walk of
    /// [`Policy::resolve`], through `pools`). Representatives are left empty.
    fn build(snap: &Snapshot, pools: Building) -> Uses {
        let mut ha_groups = Building::default();
        for (&vmid, group) in &snap.ha_resources {
            if let Some(g) = group {
                add(&mut ha_groups, g, vmid);
            }
        }
        // Device -> the mappings that map it (a device may sit in several).
        let mut mapped_by: HashMap<&str, Vec<&str>> = HashMap::default();
        for (key, devices) in &snap.mappings {
            for d in devices {
                mapped_by.entry(d.as_str()).or_default().push(key.as_str());
            }
        }
        let mut storages = Building::default();
        let mut mappings = Building::default();
        let mut pci = Building::default();
        let mut usb = Building::default();
        for (&vmid, u) in &snap.uses {
            for s in u.storages.iter() {
                add(&mut storages, s, vmid);
            }
            for m in u.mappings.iter() {
                add(&mut mappings, m, vmid);
                // Its devices are passed through to it too, whatever their kind.
                for d in snap.mappings.get(m).into_iter().flatten() {
                    add(&mut pci, d, vmid);
                    add(&mut usb, d, vmid);
                }
            }
            for (raw, map) in [(&u.pci, &mut pci), (&u.usb, &mut usb)] {
                for d in raw.iter() {
                    add(map, d, vmid);
                    // A device used raw is a use of every mapping that maps it.
                    for &m in mapped_by.get(d).into_iter().flatten() {
                        add(&mut mappings, m, vmid);
                    }
                }
            }
        }
        Uses {
            pools: Group::of(pools),
            ha_groups: Group::of(ha_groups),
            storages: Group::of(storages),
            mappings: Group::of(mappings),
            pci: Group::of(pci),
            usb: Group::of(usb),
        }
    }

    /// Every list of the index, by kind.
    fn kinds(&self) -> [&HashMap<String, Group>; 6] {
        [
            &self.pools,
            &self.ha_groups,
            &self.storages,
            &self.mappings,
            &self.pci,
            &self.usb,
        ]
    }

    /// [`Uses::kinds`], to change.
    fn kinds_mut(&mut self) -> [&mut HashMap<String, Group>; 6] {
        [
            &mut self.pools,
            &mut self.ha_groups,
            &mut self.storages,
            &mut self.mappings,
            &mut self.pci,
            &mut self.usb,
        ]
    }

    fn heap_bytes(&self) -> usize {
        self.kinds()
            .iter()
            .map(|m| {
                // A slot per capacity (key, two boxed slices, a control byte), then each key and
                // both lists.
                m.capacity() * (size_of::<(String, Group)>() + 1)
                    + m.iter()
                        .map(|(k, g)| {
                            k.capacity()
                                + size_of_val::<[Vmid]>(&g.members)
                                + size_of_val::<[Vmid]>(&g.reps)
                        })
                        .sum::<usize>()
            })
            .sum()
    }
}

/// Which rules govern one guest. Guests with equal `Governing` are judged alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Governing<'a> {
    /// A `vmid = N` rule, alone.
    Exact(u32),
    /// The selector rules it matches and the range holding it (at least one).
    Matched(&'a [u32], Option<u32>),
    /// No rule: the default.
    Default,
}

impl Policy {
    /// Builds the selector matches of `snapshot` for this policy; `policy_key` identifies
    /// the policy for caching.
    /// The snapshot's `Uses` index is built in the same walk of its guests (and one of
    /// the guests whose configs were read).
    pub fn resolve(&self, snapshot: Arc<Snapshot>, policy_key: usize) -> Resolved {
        let mut matches = HashMap::default();
        let mut pools = Building::default();
        let mut hit = Vec::new();
        for g in snapshot.guests.values() {
            if let Some(p) = &g.pool {
                add(&mut pools, p, g.vmid);
            }
            if self.selector_rules.is_empty() {
                continue;
            }
            self.selector_hits(g, &mut hit);
            if !hit.is_empty() {
                matches.insert(g.vmid, hit.clone().into_boxed_slice());
            }
        }
        let mut uses = Uses::build(&snapshot, pools);
        for groups in uses.kinds_mut() {
            for g in groups.values_mut() {
                g.reps = self.representatives(&g.members, &matches);
            }
        }
        Resolved {
            matches,
            uses,
            snapshot,
            policy_key,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The lowest of `members` (sorted) for each distinct set of rules governing them.
    /// `matches` is the view's guest -> selector rules being built.
    fn representatives(&self, members: &[Vmid], matches: &Matches) -> Box<[Vmid]> {
        let mut seen: HashSet<Governing, foldhash::fast::RandomState> = HashSet::default();
        let mut default_seen = false;
        let mut reps = Vec::new();
        for &v in members {
            let fresh = match self.governing_in(v, Some(matches)) {
                // Most members of a big pool: no rule, or the same few.
                Governing::Default => !std::mem::replace(&mut default_seen, true),
                g => seen.insert(g),
            };
            if fresh {
                reps.push(v);
            }
        }
        reps.into_boxed_slice()
    }

    /// Whether any rule picks guests through the inventory.
    pub fn needs_inventory(&self) -> bool {
        !self.selector_rules.is_empty()
    }

    /// The `file:line` of the first selector rule (for "add `[inventory]`" errors).
    pub fn first_selector_origin(&self) -> Option<&str> {
        self.selector_rules
            .first()
            .map(|&i| self.rules[i as usize].origin.as_str())
    }

    /// An error for each selector rule when there is no `[inventory]` to match them with.
    pub fn require_inventory(&self, have: bool) -> Result<(), super::PolicyError> {
        if have || !self.needs_inventory() {
            return Ok(());
        }
        let errors = self
            .selector_rules
            .iter()
            .map(|&i| {
                let r = &self.rules[i as usize];
                let (path, line) = r.origin.rsplit_once(':').unwrap_or((&r.origin, "1"));
                super::PolicyError::Invalid {
                    path: path.to_string(),
                    line: line.parse().unwrap_or(1),
                    message: format!(
                        "this rule selects guests by {} and needs the inventory: add an [inventory] section with token_file to the config (see README \"Inventory and selectors\")",
                        r.selector.as_ref().map(|s| s.describe()).unwrap_or_default()
                    ),
                }
            })
            .collect();
        Err(super::PolicyError::from_list(errors).unwrap_or(super::PolicyError::Many(vec![])))
    }

    /// The range rule holding `vmid`, if any.
    #[inline]
    fn range_index(&self, vmid: Vmid) -> Option<u32> {
        let pos = self.ranges.partition_point(|r| r.0 <= vmid);
        match pos.checked_sub(1).map(|p| self.ranges[p]) {
            Some((_, hi, i)) if vmid <= hi => Some(i),
            _ => None,
        }
    }

    /// The rules that govern `vmid` (see the module doc for the precedence).
    #[inline]
    pub fn governing<'a>(&self, vmid: Vmid, view: Option<&'a Resolved>) -> Governing<'a> {
        self.governing_in(vmid, view.map(|v| &v.matches))
    }

    /// [`Policy::governing`] with the selector matches of a view (none without one).
    fn governing_in<'a>(&self, vmid: Vmid, matches: Option<&'a Matches>) -> Governing<'a> {
        if let Some(&i) = self.by_vmid.get(&vmid) {
            return Governing::Exact(i);
        }
        let sel = matches.and_then(|m| m.get(&vmid)).map_or(&[][..], |m| m);
        self.matched_or_default(vmid, sel)
    }

    /// [`Policy::governing`] of a guest no `vmid` rule names, which matches the selector
    /// rules `sel`.
    #[inline]
    fn matched_or_default<'a>(&self, vmid: Vmid, sel: &'a [u32]) -> Governing<'a> {
        let range = self.range_index(vmid);
        if sel.is_empty() && range.is_none() {
            Governing::Default
        } else {
            Governing::Matched(sel, range)
        }
    }

    /// The selector rules `g` matches, into `hit` (cleared first), in file order.
    fn selector_hits(&self, g: &crate::inventory::Guest, hit: &mut Vec<u32>) {
        hit.clear();
        hit.extend(self.selector_rules.iter().copied().filter(|&i| {
            let sel = self.rules[i as usize].selector.as_ref();
            sel.is_some_and(|s| s.matches(g))
        }));
    }

    /// The first governing rule of `vmid` that refuses `action` for `identity`
    /// (`Some(None)`: the default rule), or `None` when all permit it.
    #[inline]
    pub(super) fn refusing_rule(
        &self,
        vmid: Vmid,
        action: Action,
        identity: Option<&str>,
        view: Option<&Resolved>,
    ) -> Option<Option<u32>> {
        let refuses = |r: &GuestRule| r.refuses(action) && !r.exempt.matches(identity);
        match self.governing(vmid, view) {
            Governing::Exact(i) => refuses(&self.rules[i as usize]).then_some(Some(i)),
            Governing::Default => refuses(&self.default_rule).then_some(None),
            Governing::Matched(sel, range) => sel
                .iter()
                .copied()
                .chain(range)
                .find(|&i| refuses(&self.rules[i as usize]))
                .map(Some),
        }
    }

    /// Whether `vmid` is protected at all: some governing rule refuses some change
    /// (ignoring exemptions).
    pub fn is_protected(&self, vmid: Vmid, view: Option<&Resolved>) -> bool {
        self.restrictive(self.governing(vmid, view))
    }

    /// Whether some rule of `governing` refuses some change (ignoring exemptions).
    fn restrictive(&self, governing: Governing) -> bool {
        match governing {
            Governing::Exact(i) => self.rules[i as usize].is_restrictive(),
            Governing::Default => self.default_rule.is_restrictive(),
            Governing::Matched(sel, range) => sel
                .iter()
                .copied()
                .chain(range)
                .any(|i| self.rules[i as usize].is_restrictive()),
        }
    }

    /// The guests of `snap` that [`Policy::is_protected`] counts as protected, sorted: whose
    /// configs the inventory reads. One walk of the guests, without building a [`Resolved`]
    /// (its index would be built again once the configs are read).
    pub fn protected_guests(&self, snap: &Snapshot) -> Vec<Vmid> {
        let mut hit = Vec::new();
        let mut out: Vec<Vmid> = snap
            .guests
            .values()
            .filter(|g| {
                let governing = match self.by_vmid.get(&g.vmid) {
                    Some(&i) => Governing::Exact(i),
                    None => {
                        self.selector_hits(g, &mut hit);
                        self.matched_or_default(g.vmid, &hit)
                    }
                };
                self.restrictive(governing)
            })
            .map(|g| g.vmid)
            .collect();
        out.sort_unstable();
        out
    }

    /// `guest 104 (file:line)` or `guests tags = ["prod"] (file:line) through tag "prod"`:
    /// every rule governing `vmid`, for `pvegate check` and `policy show`.
    pub fn explain_guest(&self, vmid: Vmid, view: Option<&Resolved>) -> Vec<String> {
        let guest = view.and_then(|v| v.snapshot.guests.get(&vmid));
        match self.governing(vmid, view) {
            Governing::Exact(i) => vec![format!("{} through vmid", self.rules[i as usize].label())],
            Governing::Default => vec![format!(
                "default_access {} ({})",
                self.default_rule.access.as_str(),
                self.default_rule.origin
            )],
            Governing::Matched(sel, range) => sel
                .iter()
                .copied()
                .chain(range)
                .map(|i| {
                    let r = &self.rules[i as usize];
                    match (&r.selector, guest) {
                        (Some(s), Some(g)) => {
                            format!("{} through {}", r.label(), s.matched_through(g))
                        }
                        _ => format!("{} through vmids", r.label()),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Guest, GuestType};
    use crate::pve::{GuestSet, Operation, Route};

    pub(crate) fn snapshot(guests: &[(Vmid, &str, &str, Option<&str>)]) -> Snapshot {
        let mut s = Snapshot::empty();
        for &(vmid, name, tags, pool) in guests {
            s.guests.insert(
                vmid,
                Guest {
                    vmid,
                    name: name.into(),
                    node: "pve".into(),
                    kind: GuestType::Qemu,
                    tags: crate::inventory::split_tags(tags),
                    pool: pool.map(Into::into),
                    template: false,
                    status: "running".into(),
                },
            );
        }
        s
    }

    const POLICY: &str = r#"
[[guest]]
tags = ["prod"]
access = "readonly"
allow = ["snapshot.*"]

[[guest]]
pool = "lab"
access = "managed"
deny = ["destroy"]

[[guest]]
name = "doc*"
access = "readonly"

[[guest]]
vmid = 110
access = "managed"

[[guest]]
vmids = "200-299"
access = "managed"
deny = ["power.*"]
"#;

    fn op(action: &str, vmid: Vmid) -> Operation {
        Operation::new(Route::Unknown, action.parse().unwrap(), GuestSet::one(vmid))
    }

    #[test]
    fn precedence_exact_then_every_match_then_default() {
        let p = Policy::from_toml_str("p.toml", POLICY).unwrap();
        let s = Arc::new(snapshot(&[
            (104, "app1", "prod", None),
            (105, "web", "dev", Some("lab")),
            (106, "docs", "", Some("lab")),
            (110, "tofu", "prod", None),
            (120, "free", "", None),
            (205, "x", "", Some("lab")),
        ]));
        let r = p.resolve(s, 0);
        let d = |a: &str, v: Vmid| p.decide_in(&op(a, v), None, Some(&r)).verdict();
        use super::super::Verdict::*;
        // tag rule: readonly, snapshots allowed
        assert_eq!(d("power.stop", 104), Deny);
        assert_eq!(d("snapshot.create", 104), Allow);
        // pool rule: destroy refused only
        assert_eq!(d("power.stop", 105), Allow);
        assert_eq!(d("destroy", 105), Deny);
        // pool (managed) and name (readonly) both match: the most restrictive wins
        assert_eq!(d("power.stop", 106), Deny);
        // an exact vmid rule wins alone even though the tag matches
        assert_eq!(d("power.stop", 110), Allow);
        // nothing matches: default (managed)
        assert_eq!(d("power.stop", 120), Allow);
        // range + pool: each refuses its own
        assert_eq!(d("power.stop", 205), Deny);
        assert_eq!(d("destroy", 205), Deny);
        assert_eq!(d("config.write", 205), Allow);
        // without an inventory selectors match nothing
        assert_eq!(p.decide(&op("power.stop", 104), None).verdict(), Allow);
        let why = p.explain_guest(106, Some(&r));
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("pool \"lab\""), "{why:?}");
        assert!(why[1].contains("name \"docs\" ~ \"doc*\""), "{why:?}");
        assert!(p.is_protected(105, Some(&r)) && !p.is_protected(120, Some(&r)));
    }

    #[test]
    fn selector_errors_are_located() {
        for (src, line, needle) in [
            (
                "[[guest]]\ntags = []\naccess = \"readonly\"\n",
                2,
                "selects no guest",
            ),
            (
                "[[guest]]\ntags = [\"a b\"]\naccess = \"readonly\"\n",
                2,
                "not a Proxmox tag",
            ),
            (
                "[[guest]]\ntype = \"vm\"\naccess = \"readonly\"\n",
                2,
                "\"qemu\" or \"lxc\"",
            ),
        ] {
            let e = Policy::from_toml_str("t.toml", src)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("t.toml:{line}")) && e.contains(needle),
                "{e}"
            );
        }
        let p = Policy::from_toml_str(
            "t.toml",
            "[[guest]]\nvmid = 104\nname = \"doc1\"\naccess = \"readonly\"\n",
        )
        .unwrap();
        assert!(
            !p.needs_inventory(),
            "a plain name beside vmid stays a label"
        );
    }
}
