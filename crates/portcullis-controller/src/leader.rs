//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! Every replica serves traffic; only the Lease holder writes status and
//! Events. The holder renews every [`LeaseTiming::renew_interval`]. Others
//! take the Lease over once they have seen it unchanged for the lease
//! duration, measured on their own clock so that clock skew between nodes
//! does not matter. Every write carries the `resourceVersion` that was read,
//! so two replicas can never both win the same round.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::ControllerMetrics;

/// Durations of the election.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// `spec.leaseDurationSeconds`: how long others wait before taking over
    /// a Lease that is not renewed.
    pub lease_duration: Duration,
    /// How often the holder renews and the others check.
    pub renew_interval: Duration,
    /// The holder stops acting as leader when it could not renew for this
    /// long. Shorter than `lease_duration`, so it stops before anyone else
    /// can take over.
    pub renew_deadline: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
        }
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    metrics: ControllerMetrics,
    leading: watch::Sender<bool>,
    /// Last renewal this replica made, while it holds the Lease.
    renewed_at: Option<Instant>,
    /// The Lease record last seen and when it was first seen.
    observed: Option<(String, Instant)>,
}

/// Outcome of one election round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    Leading,
    Following,
    /// The API server could not be asked; keep the previous role until the
    /// renew deadline passes.
    Unknown,
}

impl LeaderElector {
    /// Creates an elector for the Lease `namespace/name`. Call
    /// [`LeaderElector::run`] to take part.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
        metrics: ControllerMetrics,
    ) -> Self {
        let (leading, _) = watch::channel(false);
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            metrics,
            leading,
            renewed_at: None,
            observed: None,
        }
    }

    /// Returns a receiver that is `true` while this replica leads.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Takes part in the election until `shutdown`, then releases the Lease
    /// if this replica holds it.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            lease = %self.name,
            identity = %self.identity,
            "joining leader election"
        );
        loop {
            let round = self.try_acquire_or_renew().await;
            self.settle(round);

            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.timing.renew_interval) => {}
            }
        }

        if *self.leading.borrow() {
            self.set_leading(false);
            self.release().await;
        }
    }

    fn settle(&mut self, round: Round) {
        match round {
            Round::Leading => {
                self.renewed_at = Some(Instant::now());
                self.set_leading(true);
            }
            Round::Following => {
                self.renewed_at = None;
                self.set_leading(false);
            }
            Round::Unknown => {
                let expired = self
                    .renewed_at
                    .is_none_or(|at| at.elapsed() >= self.timing.renew_deadline);
                if expired {
                    self.set_leading(false);
                }
            }
        }
    }

    fn set_leading(&self, leading: bool) {
        let was = self.leading.send_replace(leading);
        self.metrics.leader.set(i64::from(leading));
        if was != leading {
            if leading {
                tracing::info!(lease = %self.name, identity = %self.identity, "became leader; writing status");
            } else {
                tracing::info!(lease = %self.name, identity = %self.identity, "stopped leading");
            }
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Round {
        let current = match self.api.get_opt(&self.name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(lease = %self.name, error = %error, "failed to read the leader Lease");
                return Round::Unknown;
            }
        };
        let Some(mut lease) = current else {
            return self.create().await;
        };

        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let now = MicroTime(Timestamp::now());

        if holder.as_deref() == Some(self.identity.as_str()) {
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(self.duration_seconds());
            return self.replace(lease).await;
        }

        if holder.is_some() && !self.observed_expired(&lease) {
            return Round::Following;
        }

        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if let Some(previous) = &holder {
            tracing::info!(lease = %self.name, previous_holder = %previous, "taking over an expired Lease");
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        self.replace(lease).await
    }

    /// Returns true when the Lease record has not changed for its duration,
    /// as measured since this replica first saw the record.
    fn observed_expired(&mut self, lease: &Lease) -> bool {
        let record = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen_at = match &self.observed {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                let now = Instant::now();
                self.observed = Some((record, now));
                now
            }
        };
        let seconds = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .unwrap_or(self.duration_seconds());
        seen_at.elapsed() >= Duration::from_secs(u64::try_from(seconds.max(1)).unwrap_or(1))
    }

    async fn create(&self) -> Round {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Round::Leading,
            Err(kube::Error::Api(status)) if status.code == 409 => Round::Following,
            Err(error) => {
                tracing::warn!(lease = %self.name, error = %error, "failed to create the leader Lease");
                Round::Unknown
            }
        }
    }

    /// Writes `lease` with the `resourceVersion` it was read with.
    async fn replace(&self, lease: Lease) -> Round {
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Round::Leading,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(lease = %self.name, "Lease changed concurrently; following");
                Round::Following
            }
            Err(error) => {
                tracing::warn!(lease = %self.name, error = %error, "failed to update the leader Lease");
                Round::Unknown
            }
        }
    }

    /// Hands the Lease back so another replica can take over at once instead
    /// of waiting for it to expire.
    async fn release(&self) {
        let mut lease = match self.api.get_opt(&self.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(lease = %self.name, error = %error, "failed to read the Lease to release it");
                return;
            }
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(lease = %self.name, identity = %self.identity, "released the leader Lease")
            }
            Err(error) => {
                tracing::warn!(lease = %self.name, error = %error, "failed to release the leader Lease; it expires on its own")
            }
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}
