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
            Ok(Inspected {
                format: Some(format),
                method: method.clone(),
                path,
                op,
                identity,
            })
        }
    }
}
