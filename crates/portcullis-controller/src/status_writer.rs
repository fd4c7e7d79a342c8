//! The leader's status writer: server-side apply of `status` with field
//! manager `portcullis`, plus Events for transitions a user should notice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::{Api, Client, Resource};
use portcullis_api::{ApiKey, GatewayRoute};
use portcullis_compile::Report;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::ControllerMetrics;
use crate::status::{self, Notice};
use crate::watch::Watched;

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "portcullis";

/// Status writes in flight at once.
const CONCURRENT_WRITES: usize = 8;
/// Wait before retrying after a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Interval of a full comparison even without changes, which repairs a
/// status that someone else edited.
const RESYNC_EVERY: Duration = Duration::from_secs(60);
/// A status this writer just wrote is not written again for this long,
/// because the watch cache may not show the write yet.
const RECENT_WRITE: Duration = Duration::from_secs(10);

/// Writes status for the reports of synced compiles while this replica
/// leads.
pub struct StatusWriter {
    client: Client,
    routes: Arc<Watched<GatewayRoute>>,
    keys: Arc<Watched<ApiKey>>,
    recorder: Recorder,
    metrics: ControllerMetrics,
    recent: HashMap<(&'static str, String, String), (serde_json::Value, Instant)>,
}

/// One pending status write.
struct Write {
    kind: &'static str,
    namespace: String,
    name: String,
    body: serde_json::Value,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    notices: Vec<Notice>,
}

impl StatusWriter {
    /// Creates a writer that reads current status from the watch caches.
    pub fn new(
        client: Client,
        identity: &str,
        routes: Arc<Watched<GatewayRoute>>,
        keys: Arc<Watched<ApiKey>>,
        metrics: ControllerMetrics,
    ) -> Self {
        let reporter = Reporter {
            controller: "portcullis".to_owned(),
            instance: Some(identity.to_owned()),
        };
        StatusWriter {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            routes,
            keys,
            metrics,
            recent: HashMap::new(),
        }
    }

    /// Writes status whenever a new report arrives or this replica becomes
    /// leader, until `shutdown`.
    pub async fn run(
        mut self,
        mut reports: watch::Receiver<Option<Arc<Report>>>,
        mut leading: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let mut wait = RESYNC_EVERY;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = reports.changed() => if changed.is_err() { return },
                changed = leading.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }

            if !*leading.borrow_and_update() {
                self.recent.clear();
                wait = RESYNC_EVERY;
                continue;
            }
            let Some(report) = reports.borrow_and_update().clone() else {
                continue;
            };
            let failures = self.write_all(&report).await;
            wait = if failures > 0 {
                RETRY_AFTER
            } else {
                RESYNC_EVERY
            };
        }
    }

    /// Writes every status that differs from `report` and returns the number
    /// of failed writes.
    async fn write_all(&mut self, report: &Report) -> usize {
        let now = Timestamp::now();
        let mut writes = Vec::new();
        for entry in &report.routes {
            let Some(object) = self.routes.get(&entry.namespace, &entry.name) else {
                continue;
            };
            let current = object.status.as_ref();
            let desired = status::route_status(entry, current, now);
            if status::route_status_matches(current, &desired) {
                continue;
            }
            let previous = current.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
            writes.push(Write {
                kind: "GatewayRoute",
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
                notices: status::notices(previous, &desired.conditions),
                body: apply_body::<GatewayRoute>(&entry.namespace, &entry.name, json!(desired)),
                reference: object.object_ref(&()),
            });
        }
        for entry in &report.keys {
            let Some(object) = self.keys.get(&entry.namespace, &entry.name) else {
                continue;
            };
            let current = object.status.as_ref();
            let desired = status::key_status(entry, current, now);
            if status::key_status_matches(current, &desired) {
                continue;
            }
            let previous: &[Condition] = current.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
            writes.push(Write {
                kind: "ApiKey",
                namespace: entry.namespace.clone(),
                name: entry.name.clone(),
                notices: status::notices(previous, &desired.conditions),
                body: apply_body::<ApiKey>(&entry.namespace, &entry.name, json!(desired)),
                reference: object.object_ref(&()),
            });
        }

        let writes: Vec<Write> = writes
            .into_iter()
            .filter(|write| !self.written_recently(write))
            .collect();
        if writes.is_empty() {
            return 0;
        }

        let this = &*self;
        let results: Vec<(Write, bool)> = futures::stream::iter(writes)
            .map(|write| async move {
                let ok = this.write(&write).await;
                (write, ok)
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .collect()
            .await;

        let mut failures = 0;
        for (write, ok) in results {
            if ok {
                let key = (write.kind, write.namespace, write.name);
                self.recent.insert(key, (write.body, Instant::now()));
            } else {
                failures += 1;
            }
        }
        self.recent.retain(|_, (_, at)| at.elapsed() < RECENT_WRITE);
        failures
    }

    fn written_recently(&self, write: &Write) -> bool {
        let key = (write.kind, write.namespace.clone(), write.name.clone());
        self.recent
            .get(&key)
            .is_some_and(|(body, at)| at.elapsed() < RECENT_WRITE && same_status(body, &write.body))
    }

    /// Applies one status and publishes its Events. Returns false when the
    /// write failed and should be retried.
    async fn write(&self, write: &Write) -> bool {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = match write.kind {
            "GatewayRoute" => {
                let api: Api<GatewayRoute> = Api::namespaced(self.client.clone(), &write.namespace);
                api.patch_status(&write.name, &params, &Patch::Apply(&write.body))
                    .await
                    .map(drop)
            }
            _ => {
                let api: Api<ApiKey> = Api::namespaced(self.client.clone(), &write.namespace);
                api.patch_status(&write.name, &params, &Patch::Apply(&write.body))
                    .await
                    .map(drop)
            }
        };

        match result {
            Ok(()) => {
                self.metrics
                    .status_writes_total
                    .with_label_values(&[write.kind])
                    .inc();
                tracing::debug!(kind = write.kind, namespace = %write.namespace, name = %write.name, "status written");
            }
            // Deleted since the compile: nothing to report on.
            Err(kube::Error::Api(status)) if status.code == 404 => return true,
            Err(error) => {
                self.metrics
                    .status_write_errors_total
                    .with_label_values(&[write.kind])
                    .inc();
                tracing::warn!(
                    kind = write.kind,
                    namespace = %write.namespace,
                    name = %write.name,
                    error = %error,
                    "failed to write status; retrying in {}s",
                    RETRY_AFTER.as_secs()
                );
                return false;
            }
        }

        for notice in &write.notices {
            self.publish(write, notice).await;
        }
        true
    }

    async fn publish(&self, write: &Write, notice: &Notice) {
        let event = Event {
            type_: notice.type_,
            reason: notice.reason.clone(),
            note: Some(notice.note.clone()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        match self.recorder.publish(&event, &write.reference).await {
            Ok(()) => self
                .metrics
                .events_total
                .with_label_values(&[write.kind, &notice.reason])
                .inc(),
            Err(error) => tracing::warn!(
                kind = write.kind,
                namespace = %write.namespace,
                name = %write.name,
                reason = %notice.reason,
                error = %error,
                "failed to publish an Event"
            ),
        }
    }
}

/// Server-side apply body that sets only `status`.
fn apply_body<K: Resource<DynamicType = ()>>(
    namespace: &str,
    name: &str,
    status: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name, "namespace": namespace },
        "status": status,
    })
}

/// Compares two apply bodies without `lastTransitionTime`, which differs
/// between two builds of the same status.
fn same_status(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    fn strip(value: &serde_json::Value) -> serde_json::Value {
        let mut value = value.clone();
        if let Some(conditions) = value
            .pointer_mut("/status/conditions")
            .and_then(|c| c.as_array_mut())
        {
            for condition in conditions {
                if let Some(fields) = condition.as_object_mut() {
                    fields.remove("lastTransitionTime");
                }
            }
        }
        value
    }
    strip(a) == strip(b)
}
