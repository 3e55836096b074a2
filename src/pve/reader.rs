//! The one request reader that the inspect layer and `pvegate check` share: a request whose
//! head passed [`super::framing::read_head`] and whose body was read becomes [`Inspected`],
//! the typed facts the policy decides on.

use http::{HeaderMap, Method};

use super::framing::{BodyPlan, Refusal, RefusalKind};
use crate::pve::request;
use crate::pve::{self, auth, ApiFormat, GuestSet, InspectError, Operation, Params, Route, Target};

/// The typed facts about one request, for the layers after this one.
#[derive(Clone, Debug)]
pub struct Inspected {
    /// `None` outside `/api2`.
    pub format: Option<ApiFormat>,
    pub method: Method,
    /// The decoded path, for logs and messages (never the query).
    pub path: String,
    pub op: Operation,
    /// Token id or ticket user of the credential pveproxy will use.
    pub identity: Option<String>,
    /// The parameters as pveproxy will read them (for the digest of a request that needs
    /// approval, [`crate::approval::gate::digest`]).
    pub params: Params,
    /// What the write does that only the inventory can judge (sticky protection, stored
    /// selections, dependencies); `None` for reads and most writes.
    pub change: Option<crate::inventory::Change>,
}

impl Inspected {
    /// The endpoint for logs: the catalogue template, "unknown" or "static".
    pub fn endpoint(&self) -> &str {
        match &self.op.route {
            Route::Known(t) => t,
            Route::Unknown => "unknown",
            Route::Static => "static",
        }
    }
}

/// Step two: parameters -> [`Inspected`]. `body` is the buffered body (empty for GET/DELETE and
/// uploads, whose parameters are in the query alone).
pub fn inspect_request(
    method: &Method,
    target: Target,
    query: Option<&str>,
    plan: &BodyPlan,
    body: &[u8],
    headers: &HeaderMap,
) -> Result<Inspected, Refusal> {
    let identity = auth::credential(headers).identity().map(str::to_owned);
    match target {
        Target::Other { path } => Ok(Inspected {
            format: None,
            method: method.clone(),
            path,
            op: Operation::new(Route::Static, pve::Action::Read, GuestSet::None),
            identity,
            params: Params::default(),
            change: None,
        }),
        Target::Api { format, segments } => {
            let bad = |m: String| Refusal::bad(Some(format), m);
            let query = request::parse_urlencoded(query.unwrap_or("").as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            let params = match plan {
                BodyPlan::Buffer(kind) if !body.is_empty() => {
                    let body_params =
                        request::parse_body(*kind, body).map_err(|e| bad(e.to_string()))?;
                    Params::merge(body_params, query)
                }
                _ => query,
            };
            let op = pve::inspect(method, &segments, &params).map_err(|e| match e {
                InspectError::Malformed(m) => bad(m),
                InspectError::Unjudgeable(m) => Refusal {
                    format: Some(format),
                    kind: RefusalKind::Unjudgeable(m),
                },
            })?;
            let len = segments.iter().map(|s| s.len() + 1).sum::<usize>();
            let mut path = String::with_capacity("/api2/".len() + format.as_str().len() + len);
            path.push_str("/api2/");
            path.push_str(format.as_str());
            for s in &segments {
                path.push('/');
                path.push_str(s);
            }
            let change = if method == Method::GET {
                None
            } else {
                crate::inventory::change::extract(method, &op.route, &segments, &params)
                    .map_err(bad)?
            };
            Ok(Inspected {
                format: Some(format),
                method: method.clone(),
                path,
                op,
                identity,
                params,
                change,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pve::framing::read_head;
    use http::header;

    fn read(method: Method, target: &str, body: &str) -> Result<Inspected, Refusal> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            "PVEAPIToken=ci@pve!tofu=11111111-2222-3333-4444-555555555555"
                .parse()
                .unwrap(),
        );
        if !body.is_empty() {
            headers.insert(header::CONTENT_LENGTH, body.len().into());
        }
        let (target, query, plan) = read_head(&method, target, &headers)?;
        inspect_request(&method, target, query, &plan, body.as_bytes(), &headers)
    }

    #[test]
    fn a_request_becomes_its_facts() {
        let i = read(
            Method::POST,
            "/api2/extjs/nodes/pve/qemu/104/status/stop",
            "timeout=5",
        )
        .unwrap();
        assert_eq!(i.format, Some(ApiFormat::Extjs));
        assert_eq!(i.path, "/api2/extjs/nodes/pve/qemu/104/status/stop");
        assert_eq!(i.endpoint(), "/nodes/{node}/qemu/{vmid}/status/stop");
        assert_eq!(i.op.action.as_str(), "power.stop");
        assert_eq!(i.identity.as_deref(), Some("ci@pve!tofu"));
        let s = read(Method::GET, "/pve2/js/pvemanagerlib.js", "").unwrap();
        assert_eq!((s.format, s.endpoint()), (None, "static"));
    }

    #[test]
    fn unreadable_parameters_are_refused_with_the_format() {
        // The path names VM 104, the body VM 105: pveproxy refuses the conflict, and so does
        // pvegate.
        let r = read(
            Method::POST,
            "/api2/json/nodes/pve/qemu/104/status/stop",
            "vmid=105",
        )
        .unwrap_err();
        assert_eq!(r.format, Some(ApiFormat::Json));
        assert!(matches!(r.kind, RefusalKind::Malformed(_)), "{r:?}");
    }
}
