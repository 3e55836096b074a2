//! The `pvegate_inventory_*` metrics, read at scrape time from the inventory `serve` runs
//! (none without `[inventory]`): whether a snapshot is loaded, its age, the guests in it,
//! and how many refreshes failed.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::Inventory;

static LIVE: OnceLock<Inventory> = OnceLock::new();

/// Makes `inv` the inventory the metrics describe (once per process).
pub fn publish(inv: &Inventory) {
    let _ = LIVE.set(inv.clone());
}

/// The collector registered with the process's registry.
#[derive(Debug)]
pub struct InventoryMetrics;

impl Collector for InventoryMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(inv) = LIVE.get() else {
            return Ok(());
        };
        let snap = inv.current();
        let loaded = ConstGauge::new(i64::from(snap.is_some()));
        let m = encoder.encode_descriptor(
            "inventory_loaded",
            "1 once an inventory snapshot has been read, 0 before",
            None,
            loaded.metric_type(),
        )?;
        loaded.encode(m)?;
        let fresh = ConstGauge::new(i64::from(inv.fresh().is_ok()));
        let m = encoder.encode_descriptor(
            "inventory_fresh",
            "1 if the snapshot is younger than inventory.max_age_secs (writes that need it are judged), 0 if stale or never read (they are refused)",
            None,
            fresh.metric_type(),
        )?;
        fresh.encode(m)?;
        if let Some(age) = inv.age() {
            let g = ConstGauge::new(age.as_secs_f64());
            let m = encoder.encode_descriptor(
                "inventory_age_seconds",
                "Seconds since the inventory snapshot was read",
                None,
                g.metric_type(),
            )?;
            g.encode(m)?;
        }
        let guests = ConstGauge::new(snap.map_or(0, |s| s.guests.len() as i64));
        let m = encoder.encode_descriptor(
            "inventory_guests",
            "Guests in the inventory snapshot",
            None,
            guests.metric_type(),
        )?;
        guests.encode(m)?;
        let failures = ConstCounter::new(inv.failures());
        let m = encoder.encode_descriptor(
            "inventory_refresh_failures",
            "Inventory refreshes that failed (the last good snapshot is kept until max_age_secs)",
            None,
            failures.metric_type(),
        )?;
        failures.encode(m)
    }
}
