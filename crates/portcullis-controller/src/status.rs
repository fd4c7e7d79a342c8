//! Turning a compile report into `status` and deciding what changed.
//!
//! Pure functions: the writer in `status_writer.rs` does the IO. Two
//! statuses are compared without `lastTransitionTime`, which is kept from
//! the current condition while its status stays the same, so a status that
//! is already right is never written again.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use portcullis_api::{ApiKeyStatus, GatewayRouteStatus};
use portcullis_compile::{Check, KeyReport, RouteReport};

/// Condition types written on a GatewayRoute, in order.
pub const ROUTE_CONDITIONS: [&str; 3] = ["Accepted", "ResolvedRefs", "Programmed"];
/// Condition type written on an ApiKey.
pub const KEY_CONDITION: &str = "Ready";

/// Builds the status a route should have according to `report`.
pub fn route_status(
    report: &RouteReport,
    current: Option<&GatewayRouteStatus>,
    now: Timestamp,
) -> GatewayRouteStatus {
    let current_conditions = current.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let checks = [&report.accepted, &report.resolved_refs, &report.programmed];
    let conditions = ROUTE_CONDITIONS
        .iter()
        .zip(checks)
        .map(|(kind, check)| condition(kind, check, report.generation, current_conditions, now))
        .collect();
    GatewayRouteStatus {
        observed_generation: report.generation,
        conditions,
    }
}

/// Builds the status a key should have according to `report`.
pub fn key_status(
    report: &KeyReport,
    current: Option<&ApiKeyStatus>,
    now: Timestamp,
) -> ApiKeyStatus {
    let current_conditions = current.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    ApiKeyStatus {
        observed_generation: report.generation,
        fingerprint: report.fingerprint.clone(),
        referenced_by: report.referenced_by.clone(),
        conditions: vec![condition(
            KEY_CONDITION,
            &report.ready,
            report.generation,
            current_conditions,
            now,
        )],
    }
}

fn condition(
    kind: &str,
    check: &Check,
    generation: Option<i64>,
    current: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = if check.status { "True" } else { "False" };
    let last_transition_time = find(current, kind)
        .filter(|existing| existing.status == status)
        .map(|existing| existing.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: check.reason.clone(),
        message: check.message.clone(),
        observed_generation: generation,
        last_transition_time,
    }
}

fn find<'c>(conditions: &'c [Condition], kind: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == kind)
}

/// True when `current` already shows `desired`, ignoring
/// `lastTransitionTime` and conditions of other types.
pub fn route_status_matches(
    current: Option<&GatewayRouteStatus>,
    desired: &GatewayRouteStatus,
) -> bool {
    let Some(current) = current else {
        return false;
    };
    current.observed_generation == desired.observed_generation
        && conditions_match(&current.conditions, &desired.conditions)
}

/// True when `current` already shows `desired`, ignoring
/// `lastTransitionTime` and conditions of other types.
pub fn key_status_matches(current: Option<&ApiKeyStatus>, desired: &ApiKeyStatus) -> bool {
    let Some(current) = current else {
        return false;
    };
    current.observed_generation == desired.observed_generation
        && current.fingerprint == desired.fingerprint
        && current.referenced_by == desired.referenced_by
        && conditions_match(&current.conditions, &desired.conditions)
}

fn conditions_match(current: &[Condition], desired: &[Condition]) -> bool {
    desired.iter().all(|want| {
        find(current, &want.type_).is_some_and(|have| {
            have.status == want.status
                && have.reason == want.reason
                && have.message == want.message
                && have.observed_generation == want.observed_generation
        })
    })
}

/// An Event worth publishing for a condition change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub type_: EventType,
    pub reason: String,
    pub note: String,
}

/// Returns the Events a user should see when `current` becomes `desired`.
///
/// A condition that turns False gets one: a route no longer accepted, a
/// missing Service, no ready endpoints, a revoked or expired key. A route or
/// key that is usable again gets one too.
pub fn notices(current: &[Condition], desired: &[Condition]) -> Vec<Notice> {
    let mut notices = Vec::new();
    for want in desired {
        let previous = find(current, &want.type_);
        if previous.is_some_and(|p| p.status == want.status && p.reason == want.reason) {
            continue;
        }
        if want.status == "False" {
            // `NotAccepted` only repeats the failed `Accepted` condition.
            if want.reason == "NotAccepted" {
                continue;
            }
            // Disabling a route or revoking a key is the user's own choice.
            let type_ = if want.reason == "Disabled" || want.reason == "Revoked" {
                EventType::Normal
            } else {
                EventType::Warning
            };
            notices.push(Notice {
                type_,
                reason: want.reason.clone(),
                note: want.message.clone(),
            });
        } else if previous.is_some_and(|p| p.status == "False")
            && (want.type_ == "Programmed" || want.type_ == KEY_CONDITION)
        {
            notices.push(Notice {
                type_: EventType::Normal,
                reason: want.reason.clone(),
                note: want.message.clone(),
            });
        }
    }
    notices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_report(accepted: Check, programmed: Check) -> RouteReport {
        RouteReport {
            namespace: "acme".into(),
            name: "orders".into(),
            generation: Some(2),
            accepted,
            resolved_refs: pass("ResolvedRefs"),
            programmed,
        }
    }

    fn pass(reason: &str) -> Check {
        Check {
            status: true,
            reason: reason.into(),
            message: format!("{reason} ok"),
        }
    }

    fn fail(reason: &str) -> Check {
        Check {
            status: false,
            reason: reason.into(),
            message: format!("{reason} failed"),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_kept_while_status_holds() {
        let report = route_report(pass("Accepted"), pass("Programmed"));
        let first = route_status(&report, None, at(1_000));
        let second = route_status(&report, Some(&first), at(2_000));
        assert_eq!(second, first, "unchanged report must give identical status");
        assert!(route_status_matches(Some(&first), &second));
    }

    #[test]
    fn transition_time_moves_on_flip() {
        let report = route_report(pass("Accepted"), pass("Programmed"));
        let first = route_status(&report, None, at(1_000));
        let broken = route_report(pass("Accepted"), fail("NoReadyEndpoints"));
        let second = route_status(&broken, Some(&first), at(2_000));
        let programmed = find(&second.conditions, "Programmed").unwrap();
        assert_eq!(programmed.last_transition_time, Time(at(2_000)));
        let accepted = find(&second.conditions, "Accepted").unwrap();
        assert_eq!(accepted.last_transition_time, Time(at(1_000)));
        assert!(!route_status_matches(Some(&first), &second));
    }

    #[test]
    fn comparison_ignores_transition_time() {
        let report = route_report(pass("Accepted"), pass("Programmed"));
        let mut current = route_status(&report, None, at(1_000));
        for condition in &mut current.conditions {
            condition.last_transition_time = Time(at(5));
        }
        let desired = route_status(&report, None, at(9_000));
        assert!(route_status_matches(Some(&current), &desired));
    }

    #[test]
    fn generation_change_needs_write() {
        let report = route_report(pass("Accepted"), pass("Programmed"));
        let current = route_status(&report, None, at(1_000));
        let newer = RouteReport {
            generation: Some(3),
            ..report
        };
        let desired = route_status(&newer, Some(&current), at(2_000));
        assert!(!route_status_matches(Some(&current), &desired));
    }

    #[test]
    fn key_status_compares_references() {
        let report = KeyReport {
            namespace: "acme".into(),
            name: "partner".into(),
            generation: Some(1),
            ready: pass("Ready"),
            fingerprint: Some("0123abcd".into()),
            referenced_by: vec!["orders".into()],
        };
        let current = key_status(&report, None, at(1));
        let fewer = KeyReport {
            referenced_by: Vec::new(),
            ..report
        };
        let desired = key_status(&fewer, Some(&current), at(2));
        assert!(!key_status_matches(Some(&current), &desired));
        assert!(key_status_matches(Some(&desired), &desired));
        assert!(!key_status_matches(None, &desired));
    }

    #[test]
    fn notices_for_failures_and_recovery() {
        let healthy = route_status(
            &route_report(pass("Accepted"), pass("Programmed")),
            None,
            at(1),
        );
        let duplicate = route_status(
            &route_report(fail("DuplicateRoute"), fail("NotAccepted")),
            Some(&healthy),
            at(2),
        );

        let broke = notices(&healthy.conditions, &duplicate.conditions);
        assert_eq!(broke.len(), 1, "{broke:?}");
        assert_eq!(broke[0].reason, "DuplicateRoute");
        assert_eq!(broke[0].type_, EventType::Warning);

        let again = notices(&duplicate.conditions, &duplicate.conditions);
        assert!(again.is_empty(), "{again:?}");

        let recovered = notices(&duplicate.conditions, &healthy.conditions);
        assert_eq!(recovered.len(), 1, "{recovered:?}");
        assert_eq!(recovered[0].reason, "Programmed");
        assert_eq!(recovered[0].type_, EventType::Normal);

        let fresh = notices(&[], &healthy.conditions);
        assert!(
            fresh.is_empty(),
            "a new healthy route is no news: {fresh:?}"
        );
    }

    #[test]
    fn revoked_key_is_normal_notice() {
        let report = KeyReport {
            namespace: "acme".into(),
            name: "partner".into(),
            generation: Some(1),
            ready: pass("Ready"),
            fingerprint: Some("0123abcd".into()),
            referenced_by: Vec::new(),
        };
        let ready = key_status(&report, None, at(1));
        let revoked = key_status(
            &KeyReport {
                ready: fail("Revoked"),
                ..report.clone()
            },
            Some(&ready),
            at(2),
        );
        let expired = key_status(
            &KeyReport {
                ready: fail("Expired"),
                ..report
            },
            Some(&ready),
            at(2),
        );
        let revoked = notices(&ready.conditions, &revoked.conditions);
        assert_eq!(revoked[0].type_, EventType::Normal);
        let expired = notices(&ready.conditions, &expired.conditions);
        assert_eq!(expired[0].type_, EventType::Warning);
        assert_eq!(expired[0].reason, "Expired");
    }
}
