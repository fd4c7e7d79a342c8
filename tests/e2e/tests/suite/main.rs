//! End-to-end tests of Portcullis: the real `portcullis` binary, objects
//! applied with kubectl, traffic over HTTP.
//!
//! ```sh
//! ENV=$(ENVTEST_EXTRA_TOKENS=$PWD/crates/portcullis-controller/tests/envtest-tokens.csv \
//!     path/to/envtest/start.sh)
//! . "$ENV"
//! PORTCULLIS_E2E_KUBECONFIG=$KUBECONFIG cargo test -p portcullis-e2e
//! ```
//!
//! Without `PORTCULLIS_E2E_KUBECONFIG` every test prints one line and
//! passes; `PORTCULLIS_E2E_REQUIRED=1` makes that a failure. Each test works
//! in its own namespace, so they run in parallel. `--nocapture` shows the
//! measured propagation times. `tests/e2e/README.md` describes cluster mode.

mod admission;
mod api_keys;
mod outage;
mod rbac;
mod readiness;
mod rotation;
mod sessions;
mod status;
mod traffic;
