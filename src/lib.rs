//! pvegate: a policy-enforcing reverse proxy for the Proxmox VE API.
//!
//! ```text
//! client ──TLS──▶ server (HTTP/1.1: fast path, else hyper) ──▶ inspect ──▶ authorize ──▶ forward ──TLS(pinned)──▶ pveproxy
//!                                                               │            │             └ upstream: a connection per client connection, header hygiene, websocket splice
//!                                                               │            └ policy: Policy::decide on an ArcSwap snapshot, audit event
//!                                                               └ pve: target + parameters read exactly as pveproxy does,
//!                                                                      endpoint catalogue → Operation { route, action, guests }
//! ```
//!
//! A request is read once, the way pveproxy reads it: its head against pveproxy's framing
//! rules ([`pve::framing`]), then its target and parameters ([`pve::request`]):
//! percent-decoding, slashes, formats, query-over-body precedence, `&`/`;` separators, JSON vs
//! form bodies. Anything pveproxy could read differently is refused with 400. The reader
//! ([`pve::reader`], shared by the inspect layer and `pvegate check`) maps the request to an
//! endpoint of the catalogue generated from the Proxmox API schema ([`pve::catalogue`]) and
//! finds every guest it touches ([`pve::guests`]). The authorize layer decides with a pure
//! function ([`policy::Policy::decide`]) on a snapshot of the live policy (enforcing it, or in
//! shadow mode only noting what it would refuse), answers denials itself — a refused request
//! never reaches Proxmox — and writes one audit line per request once its outcome is known
//! ([`audit::Outcome`]), through a bounded log queue that a stalled reader cannot block
//! ([`logsink`]). Everything else is forwarded unchanged ([`upstream`]), small bodies byte for
//! byte, uploads and downloads streamed, websocket consoles spliced.
//!
//! Every answer pvegate writes itself (a denial, an unreadable request, an upstream failure,
//! a head hyper cannot parse) is one [`reject::Rejection`] mapped to Proxmox's shape in one
//! place. The facts of a client connection ([`conn::ClientConn`]) travel in each request's
//! extensions; their upstream side belongs to [`upstream`] ([`upstream::ClientLink`]).
//! Imports point down: server → layers → pve / policy / upstream.
//!
//! With `[inventory]` ([`inventory`]) pvegate also keeps a snapshot of the cluster, read with
//! a read-only token of its own, so rules can pick guests by tag, pool, name, type or template
//! flag ([`policy::selector`]), stored selections and dependencies are resolved to the guests
//! they reach, and a change that would take a guest's protection away is refused
//! ([`policy::sticky`]); writes that need a snapshot older than `max_age_secs` are refused.
//!
//! pvegate holds no Proxmox credential for clients: it can only take permissions away.
//!
//! Every request and response body in the pipeline is one type ([`body::Body`]). The simulated
//! Proxmox that `pvegate demo` and the tests run against is a crate of its own, `pvegate-sim`
//! (`sim/` in the workspace), which the module `demo` brings in through the cargo feature
//! `demo` (on by default); the rest of the library uses nothing from it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod approval;
pub mod audit;
pub mod body;
pub mod bounded;
pub mod commands;
pub mod config;
pub mod conn;
pub mod crypto;
#[cfg(feature = "demo")]
pub mod demo;
pub mod early;
pub mod fast;
pub mod inventory;
pub mod layer;
pub mod logsink;
pub mod mcp;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod pve;
pub mod rearm;
pub mod reject;
pub mod server;
pub mod stack;
pub mod upstream;
pub mod version;
