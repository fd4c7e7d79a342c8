//! Harness of the Portcullis end-to-end suite.
//!
//! The suite drives the real `portcullis` binary the way a user does:
//! objects go in with `kubectl apply` of YAML and `kubectl patch`, and
//! traffic goes through the gateway over HTTP. The tests are in
//! `tests/suite/`. See `tests/e2e/README.md` for how to run them.
//!
//! In local mode (the default) the harness applies the CRDs and the chart's
//! RBAC from `manifests/install.yaml`, then starts one shared
//! `portcullis run` on 127.0.0.1 that authenticates as the chart's
//! ServiceAccount, so it has exactly the chart's permissions. It also
//! starts the demo functions `echo` and `events` on 127.0.0.1, and gives
//! every test namespace Services and EndpointSlices that point at them,
//! because the test API server runs no EndpointSlice controller.
//!
//! In cluster mode the chart runs in a kind cluster, each test namespace
//! gets the demo function Deployments of `kind/demo-functions.yaml`, and
//! traffic goes to the port-forward that `kind/run.sh` opens.

#![deny(missing_docs)]

pub mod access;
pub mod credential;
pub mod forwarder;
pub mod http;
pub mod kubectl;
pub mod local;
pub mod manifest;
pub mod process;
pub mod scenario;
pub mod settings;
pub mod suite;
pub mod wait;

pub use credential::Credential;
pub use http::Reply;
pub use scenario::{Scenario, SessionUser};
pub use wait::{PROPAGATION_TIMEOUT, eventually};
