//! The one place the request pipeline is assembled, outermost first:
//! inspect (parse as pveproxy would) → authorize (policy) → forward (Proxmox).

use tower::ServiceBuilder;

use crate::layer::{AuthorizeLayer, Forward, InspectLayer};
use crate::policy::PolicyStore;
use crate::upstream::Cluster;

/// The assembled service type.
pub type Gate = crate::layer::Inspect<crate::layer::Authorize<Forward>>;

/// Builds the pipeline in front of `upstream` (one [`crate::upstream::Upstream`] or a
/// [`Cluster`]), deciding with whatever `store` holds. Requests that need approval are
/// refused (no approval state) and selectors match nothing (no inventory); see
/// [`build_with`].
pub fn build(store: PolicyStore, upstream: impl Into<std::sync::Arc<Cluster>>) -> Gate {
    build_with(store, upstream, None, None)
}

/// [`build`] with the approval state (approvals and waivers) of `approvals`, judging also by
/// `inventory` when there is one (`[inventory]`).
pub fn build_with(
    store: PolicyStore,
    upstream: impl Into<std::sync::Arc<Cluster>>,
    approvals: Option<std::sync::Arc<crate::approval::Approvals>>,
    inventory: Option<crate::inventory::Inventory>,
) -> Gate {
    ServiceBuilder::new()
        .layer(InspectLayer)
        .layer(
            AuthorizeLayer::new(store)
                .with_approvals(approvals)
                .with_inventory(inventory),
        )
        .service(Forward::new(upstream))
}
