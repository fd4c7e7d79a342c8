//! Watch caches: one kube-runtime reflector per kind and watched namespace.
//!
//! Every cache keeps its last complete view while its watch is broken, so
//! the data plane goes on serving the last good configuration. A broken
//! watch is retried with kube-runtime's default backoff (0.8 s doubling to
//! 30 s) and relists from scratch when the API server returns 410 Gone.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::ControllerMetrics;

/// Annotation written by `kubectl apply` that the controller never reads.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Rule for which watch events trigger a recompile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeFilter {
    /// Only new, deleted or re-created objects and `metadata.generation`
    /// changes, so that the leader's own status writes do not trigger a
    /// recompile.
    Generation,
    /// Every change.
    Any,
}

/// Object kinds the controller watches.
pub(crate) trait Watchable:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Watchable for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// Client, change signal, metrics and shutdown token shared by the watch
/// tasks.
#[derive(Clone)]
pub(crate) struct WatchContext {
    pub client: Client,
    pub changes: Arc<Notify>,
    pub metrics: ControllerMetrics,
    pub shutdown: CancellationToken,
}

/// The caches of one kind: a single cluster-wide cache, or one per watched
/// namespace.
pub(crate) struct Watched<K: Watchable> {
    kind: &'static str,
    parts: Vec<Part<K>>,
}

struct Part<K: Watchable> {
    namespace: Option<String>,
    store: Store<K>,
    ready: Arc<AtomicBool>,
}

impl<K: Watchable> Watched<K> {
    /// Starts the watches of `kind` in `namespaces` (all namespaces when
    /// `None`) on `tasks`.
    pub fn start(
        kind: &'static str,
        namespaces: Option<&[String]>,
        config: watcher::Config,
        filter: ChangeFilter,
        context: &WatchContext,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let scopes: Vec<Option<String>> = match namespaces {
            Some(list) => list.iter().cloned().map(Some).collect(),
            None => vec![None],
        };

        let mut parts = Vec::with_capacity(scopes.len());
        for namespace in scopes {
            let api: Api<K> = match &namespace {
                Some(ns) => Api::namespaced(context.client.clone(), ns),
                None => Api::all(context.client.clone()),
            };
            let (store, writer) = reflector::store();
            let ready = Arc::new(AtomicBool::new(false));
            let task = WatchTask {
                kind,
                namespace: namespace.clone(),
                filter,
                ready: ready.clone(),
                context: context.clone(),
            };
            tasks.spawn(task.run(api, config.clone(), writer));
            parts.push(Part {
                namespace,
                store,
                ready,
            });
        }
        Watched { kind, parts }
    }

    /// Kind name used in logs and metric labels.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// True once every watch of this kind has completed its first list.
    pub fn is_ready(&self) -> bool {
        self.parts
            .iter()
            .all(|part| part.ready.load(Ordering::Acquire))
    }

    /// Returns every cached object of this kind.
    pub fn objects(&self) -> Vec<Arc<K>> {
        self.parts
            .iter()
            .flat_map(|part| part.store.state())
            .collect()
    }

    /// Returns the cached object `namespace/name`, if any.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = ObjectRef::new(name).within(namespace);
        self.parts
            .iter()
            .filter(|part| part.namespace.as_deref().is_none_or(|ns| ns == namespace))
            .find_map(|part| part.store.get(&key))
    }
}

/// One watch: list, then watch, feeding a reflector store.
struct WatchTask {
    kind: &'static str,
    namespace: Option<String>,
    filter: ChangeFilter,
    ready: Arc<AtomicBool>,
    context: WatchContext,
}

impl WatchTask {
    async fn run<K: Watchable>(
        self,
        api: Api<K>,
        config: watcher::Config,
        writer: reflector::store::Writer<K>,
    ) {
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|object: &mut K| {
                object.managed_fields_mut().clear();
                object.annotations_mut().remove(LAST_APPLIED_ANNOTATION);
            });
        let mut stream = std::pin::pin!(reflector::reflector(writer, stream));

        let namespace = self.namespace.as_deref().unwrap_or("*");
        let mut versions = Versions::default();
        let mut lists = 0_u64;
        tracing::debug!(kind = self.kind, namespace, "watch started");

        loop {
            let event = tokio::select! {
                () = self.context.shutdown.cancelled() => break,
                event = stream.next() => event,
            };
            match event {
                Some(Ok(event)) => {
                    if self.handle(&event, &mut versions, &mut lists) {
                        self.context.changes.notify_one();
                    }
                }
                Some(Err(error)) => {
                    self.context
                        .metrics
                        .gateway
                        .watch_errors_total
                        .with_label_values(&[self.kind])
                        .inc();
                    tracing::warn!(
                        kind = self.kind,
                        namespace,
                        error = %error,
                        "watch failed; serving the last complete view and retrying with backoff"
                    );
                }
                None => break,
            }
        }
        tracing::debug!(kind = self.kind, namespace, "watch stopped");
    }

    /// Records one event and returns true when it should trigger a compile.
    fn handle<K: Watchable>(
        &self,
        event: &watcher::Event<K>,
        versions: &mut Versions,
        lists: &mut u64,
    ) -> bool {
        let namespace = self.namespace.as_deref().unwrap_or("*");
        match event {
            watcher::Event::Init => {
                *lists += 1;
                if *lists > 1 {
                    self.context
                        .metrics
                        .watch_restarts_total
                        .with_label_values(&[self.kind])
                        .inc();
                    tracing::info!(kind = self.kind, namespace, "watch restarted; relisting");
                }
                versions.begin_list();
                false
            }
            watcher::Event::InitApply(object) => {
                versions.record_listed(object);
                false
            }
            watcher::Event::InitDone => {
                versions.finish_list();
                if !self.ready.swap(true, Ordering::AcqRel) {
                    tracing::info!(kind = self.kind, namespace, "initial list complete");
                }
                true
            }
            watcher::Event::Apply(object) => {
                let changed = versions.record(object);
                changed || self.filter == ChangeFilter::Any
            }
            watcher::Event::Delete(object) => {
                versions.forget(object);
                true
            }
        }
    }
}

/// `(uid, generation)` of every object seen, to tell spec changes from
/// status-only changes.
#[derive(Default)]
struct Versions {
    current: HashMap<(String, String), (Option<String>, Option<i64>)>,
    listing: HashMap<(String, String), (Option<String>, Option<i64>)>,
}

impl Versions {
    fn begin_list(&mut self) {
        self.listing.clear();
    }

    fn record_listed<K: Resource>(&mut self, object: &K) {
        self.listing.insert(key_of(object), version_of(object));
    }

    fn finish_list(&mut self) {
        self.current = std::mem::take(&mut self.listing);
    }

    /// Stores the object's version; returns true when it is new or differs.
    fn record<K: Resource>(&mut self, object: &K) -> bool {
        let version = version_of(object);
        self.current.insert(key_of(object), version.clone()) != Some(version)
    }

    fn forget<K: Resource>(&mut self, object: &K) {
        self.current.remove(&key_of(object));
    }
}

fn key_of<K: Resource>(object: &K) -> (String, String) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

fn version_of<K: Resource>(object: &K) -> (Option<String>, Option<i64>) {
    (object.uid(), object.meta().generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use portcullis_api::{ApiKey, ApiKeySpec};

    fn key(uid: &str, generation: i64) -> ApiKey {
        let mut key = ApiKey::new(
            "partner",
            ApiKeySpec {
                key_hash: format!("sha256:{}", "a".repeat(64)),
                previous_key_hashes: Vec::new(),
                scope: Default::default(),
                active: true,
                expires_at: None,
                description: None,
            },
        );
        key.metadata = ObjectMeta {
            name: Some("partner".into()),
            namespace: Some("acme".into()),
            uid: Some(uid.into()),
            generation: Some(generation),
            ..ObjectMeta::default()
        };
        key
    }

    #[test]
    fn versions_ignore_status_only_changes() {
        let mut versions = Versions::default();
        assert!(versions.record(&key("u1", 1)), "a new object is a change");
        assert!(
            !versions.record(&key("u1", 1)),
            "same generation is not a change"
        );
        assert!(
            versions.record(&key("u1", 2)),
            "a new generation is a change"
        );
        assert!(
            versions.record(&key("u2", 2)),
            "a re-created object is a change"
        );
    }

    #[test]
    fn versions_replaced_by_relist() {
        let mut versions = Versions::default();
        versions.record(&key("u1", 3));
        versions.begin_list();
        versions.record_listed(&key("u1", 4));
        versions.finish_list();
        assert!(!versions.record(&key("u1", 4)));
    }
}
