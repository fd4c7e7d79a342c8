//! Tests of `portcullis run` against a real Kubernetes API server.
//!
//! They need the envtest API server (`kube-apiserver-lite` with etcd) on
//! 127.0.0.1, started with this crate's test users:
//!
//! ```sh
//! ENV=$(ENVTEST_EXTRA_TOKENS=$PWD/crates/portcullis-controller/tests/envtest-tokens.csv \
//!     path/to/envtest/start.sh)
//! . "$ENV"
//! PORTCULLIS_E2E_KUBECONFIG=$KUBECONFIG cargo test -p portcullis-controller
//! ```
//!
//! The kubeconfig comes from `PORTCULLIS_E2E_KUBECONFIG`. Without it,
//! or when it points at a server that is not on a loopback address, every
//! test prints one line and passes as skipped;
//! `PORTCULLIS_E2E_REQUIRED=1` makes that a failure. The tests install the
//! CRDs and `rbac.yaml`, then run the controller in process as the
//! ServiceAccount user that `rbac.yaml` binds, with no other permission.
//! Each test works in its own namespace with its own Lease, so they run in
//! parallel against one server. `RUST_LOG=info` shows the controller logs.

mod harness;
mod leader;
mod outage;
mod readiness;
mod routes;
mod sessions;
