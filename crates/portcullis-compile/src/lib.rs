//! The compile stage of Portcullis.
//!
//! [`compile`] is a pure function: GatewayRoutes, ApiKeys, EndpointSlices and
//! (in a cluster) Services go in; an immutable [`Snapshot`] for the data plane
//! and a [`Report`] of every object's state come out. It performs no IO, so
//! it is tested from YAML alone (see `tests/golden.rs`). One invalid object
//! never fails the compile: it is left out of the snapshot and described in
//! the report.

#![deny(missing_docs)]

mod compiler;
mod key_hash;
mod path;
mod report;
mod snapshot;

pub use compiler::{CompileOptions, Resources, compile};
pub use key_hash::{KeyHash, KeyHashError};
pub use path::{PathError, RoutePattern, contains_encoded_slash, normalize_request_path};
pub use report::{Check, KeyReport, Problem, Report, RouteReport};
pub use snapshot::{
    AuthPolicy, Backend, CorsPolicy, KeyGrant, KeyInfo, MatchError, RouteMatch, RouteSpec, Snapshot,
};

/// Output of one compile run.
#[derive(Debug)]
pub struct Compiled {
    /// Routing snapshot for the data plane.
    pub snapshot: Snapshot,
    /// Per-object conditions and problems, for status and logs.
    pub report: Report,
}
