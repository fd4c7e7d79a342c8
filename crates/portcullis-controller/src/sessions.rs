//! Bearer sessions checked against the Kubernetes API: a TokenReview
//! authenticates the token, then a SubjectAccessReview checks whether
//! the user may `invoke` `gatewayroutes.portcullis.dev` in the route's
//! namespace.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use portcullis_gateway::secret::Secret;
use portcullis_gateway::sessions::VerifyFuture;
use portcullis_gateway::{SessionOutcome, SessionVerifier};

use crate::metrics::ControllerMetrics;
use crate::session_cache::{DEFAULT_CAPACITY, SessionCache};

/// Verb a user needs on `gatewayroutes` to call a bearer route.
pub const INVOKE_VERB: &str = "invoke";

/// Upper bound on one review call, so a slow API server turns into a 503
/// instead of a hanging request.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`SessionVerifier`] backed by TokenReview and SubjectAccessReview, with
/// a bounded cache of recent decisions.
pub struct KubeSessions {
    client: Client,
    audience: Option<String>,
    cache: SessionCache,
    metrics: ControllerMetrics,
}

impl KubeSessions {
    /// Creates a verifier. With `audience`, tokens must be valid for it;
    /// without, the API server's own audiences apply.
    pub fn new(client: Client, audience: Option<String>, metrics: ControllerMetrics) -> Self {
        KubeSessions {
            client,
            audience,
            cache: SessionCache::new(DEFAULT_CAPACITY),
            metrics,
        }
    }

    async fn review(&self, token: &Secret, tenant: &str) -> SessionOutcome {
        let user = match self.authenticate(token).await {
            Ok(Some(user)) => user,
            Ok(None) => return SessionOutcome::Invalid,
            Err(error) => {
                tracing::warn!(tenant, error = %error, "TokenReview failed; the request gets 503");
                return SessionOutcome::Unavailable;
            }
        };

        let name = user.username.clone().unwrap_or_default();
        match self.authorize(user, tenant).await {
            Ok(true) => SessionOutcome::Allowed { user: name },
            Ok(false) => SessionOutcome::Forbidden { user: name },
            Err(error) => {
                tracing::warn!(tenant, user = %name, error = %error, "SubjectAccessReview failed; the request gets 503");
                SessionOutcome::Unavailable
            }
        }
    }

    /// Returns the user of a valid token, `None` for an invalid one.
    async fn authenticate(&self, token: &Secret) -> Result<Option<UserInfo>, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.expose().to_owned(),
                audiences: self.audience.clone().map(|audience| vec![audience]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| ReviewError::TimedOut)??;

        let Some(status) = answer.status else {
            return Err(ReviewError::NoStatus("TokenReview"));
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        // The API server already rejects a token that is not valid for a
        // requested audience; this also rejects one whose response does
        // not list it.
        if let Some(audience) = &self.audience
            && !status.audiences.iter().flatten().any(|a| a == audience)
        {
            return Ok(None);
        }
        Ok(status.user.filter(|user| user.username.is_some()))
    }

    /// Returns true when `user` may invoke routes of `tenant`.
    async fn authorize(&self, user: UserInfo, tenant: &str) -> Result<bool, ReviewError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(INVOKE_VERB.to_owned()),
                    group: Some(portcullis_api::GROUP.to_owned()),
                    resource: Some("gatewayroutes".to_owned()),
                    namespace: Some(tenant.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer =
            tokio::time::timeout(REVIEW_TIMEOUT, api.create(&PostParams::default(), &review))
                .await
                .map_err(|_| ReviewError::TimedOut)??;
        let status = answer
            .status
            .ok_or(ReviewError::NoStatus("SubjectAccessReview"))?;
        Ok(status.allowed)
    }
}

impl SessionVerifier for KubeSessions {
    fn verify<'a>(&'a self, token: &'a Secret, tenant: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            let key = SessionCache::key(token.expose(), tenant);
            if let Some(outcome) = self.cache.get(&key, Instant::now()) {
                self.metrics.session_cache_hits_total.inc();
                return outcome;
            }
            self.metrics.session_cache_misses_total.inc();

            let outcome = self.review(token, tenant).await;
            let result = match &outcome {
                SessionOutcome::Allowed { .. } => "allowed",
                SessionOutcome::Forbidden { .. } => "forbidden",
                SessionOutcome::Invalid => "invalid",
                SessionOutcome::Unavailable => "unavailable",
            };
            self.metrics
                .session_reviews_total
                .with_label_values(&[result])
                .inc();
            self.cache.insert(key, outcome.clone(), Instant::now());
            outcome
        })
    }
}

/// Failure of a review call.
#[derive(Debug, thiserror::Error)]
enum ReviewError {
    #[error("request to the API server failed: {0}")]
    Api(#[from] kube::Error),
    #[error("request to the API server timed out after {}s", REVIEW_TIMEOUT.as_secs())]
    TimedOut,
    #[error("{0} answer has no status")]
    NoStatus(&'static str),
}
