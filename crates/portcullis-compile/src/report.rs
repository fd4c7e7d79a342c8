//! Per-object outcome of a compile, the source of status conditions, the
//! admin endpoint's JSON and the once-per-change problem log.

use serde::Serialize;

/// One condition-shaped verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// True when the condition holds.
    pub status: bool,
    /// CamelCase reason, as in Kubernetes conditions.
    pub reason: String,
    /// Sentence for humans.
    pub message: String,
}

impl Check {
    pub(crate) fn pass(reason: &str, message: impl Into<String>) -> Self {
        Check {
            status: true,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn fail(reason: &str, message: impl Into<String>) -> Self {
        Check {
            status: false,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// Outcome for one GatewayRoute, in Gateway API condition terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteReport {
    /// Namespace of the route.
    pub namespace: String,
    /// Name of the route.
    pub name: String,
    /// `metadata.generation` the verdicts describe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The spec is valid and does not collide with another route.
    pub accepted: Check,
    /// Referenced ApiKeys and the Service exist.
    pub resolved_refs: Check,
    /// The route is in the data plane with ready endpoints.
    pub programmed: Check,
}

/// Outcome for one ApiKey. Carries no secret: only the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyReport {
    /// Namespace of the key.
    pub namespace: String,
    /// Name of the key.
    pub name: String,
    /// `metadata.generation` the verdict describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The key can authenticate requests.
    pub ready: Check,
    /// First 8 hex digits of the current hash, when it is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Routes of the namespace that list the key in `allowedApiKeyIds`.
    pub referenced_by: Vec<String>,
}

/// A failed verdict, flattened for logs and the admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Problem {
    /// `GatewayRoute`, `ApiKey` or `EndpointSlice`.
    pub kind: &'static str,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// CamelCase reason.
    pub reason: String,
    /// Sentence for humans.
    pub message: String,
}

/// Everything a compile learned about the objects it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One entry per GatewayRoute, sorted by namespace and name.
    pub routes: Vec<RouteReport>,
    /// One entry per ApiKey, sorted by namespace and name.
    pub keys: Vec<KeyReport>,
    /// Every failed verdict, plus objects that could not be used at all.
    pub problems: Vec<Problem>,
}

impl Report {
    pub(crate) fn finish(&mut self) {
        self.routes
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.keys
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

        for route in &self.routes {
            // A disabled route is a choice, not a problem.
            let checks = [&route.accepted, &route.resolved_refs, &route.programmed];
            if let Some(failed) = checks
                .into_iter()
                .find(|c| !c.status && c.reason != "Disabled" && c.reason != "NotAccepted")
            {
                self.problems.push(Problem {
                    kind: "GatewayRoute",
                    namespace: route.namespace.clone(),
                    name: route.name.clone(),
                    reason: failed.reason.clone(),
                    message: failed.message.clone(),
                });
            }
        }
        for key in &self.keys {
            if !key.ready.status && key.ready.reason != "Revoked" {
                self.problems.push(Problem {
                    kind: "ApiKey",
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    reason: key.ready.reason.clone(),
                    message: key.ready.message.clone(),
                });
            }
        }
        self.problems
            .sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    }
}
