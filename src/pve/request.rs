//! How pveproxy reads a request: request-target, formats, parameters.

use std::collections::BTreeMap;

/// The formatter named after `/api2/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiFormat {
    Json,
    Extjs,
    Htmljs,
    Spiceconfig,
    Png,
    Html,
}

/// A request-target as pveproxy routes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api2/<format>/...`: decoded, non-empty path segments after the format.
    Api {
        format: ApiFormat,
        segments: Vec<String>,
    },
    /// Anything outside `/api2` (web UI pages and static files): the decoded path.
    Other { path: String },
}

/// One parameter value after pveproxy's merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// Key present without a value (`?vms`) or JSON `null`: pveproxy's `undef`.
    Absent,
    One(String),
    Many(Vec<String>),
}

/// Merged request parameters (query over body).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub map: BTreeMap<String, ParamValue>,
}
