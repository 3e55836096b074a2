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
/// refused (no approval state); see [`build_with`].
pub fn build(store: PolicyStore, upstream: impl Into<std::sync::Arc<Cluster>>) -> Gate {
    build_with(store, upstream, None)
}

/// [`build`] with the approval state (approvals and waivers) of `approvals`.
pub fn build_with(
    store: PolicyStore,
    upstream: impl Into<std::sync::Arc<Cluster>>,
    approvals: Option<std::sync::Arc<crate::approval::Approvals>>,
) -> Gate {
    ServiceBuilder::new()
        .layer(InspectLayer)
        .layer(AuthorizeLayer::new(store).with_approvals(approvals))
        .service(Forward::new(upstream))
}
