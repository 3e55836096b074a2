//! The one place the request pipeline is assembled, outermost first:
//! inspect (parse as pveproxy would) → authorize (policy) → forward (Proxmox).

use tower::ServiceBuilder;

use crate::layer::{AuthorizeLayer, Forward, InspectLayer};
use crate::policy::PolicyStore;
use crate::upstream::Upstream;

/// The assembled service type.
pub type Gate = crate::layer::Inspect<crate::layer::Authorize<Forward>>;

/// Builds the pipeline in front of `upstream`, deciding with whatever `store` holds.
pub fn build(store: PolicyStore, upstream: Upstream) -> Gate {
    build_with(store, upstream, None)
}

/// [`build`], judging also by `inventory` when there is one (`[inventory]`).
pub fn build_with(
    store: PolicyStore,
    upstream: Upstream,
    inventory: Option<crate::inventory::Inventory>,
) -> Gate {
    ServiceBuilder::new()
        .layer(InspectLayer)
        .layer(AuthorizeLayer::new(store).with_inventory(inventory))
        .service(Forward::new(upstream))
}
