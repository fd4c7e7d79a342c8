//! The chart's RBAC grants the controller what it needs and nothing more.
//! Every other local-mode test runs the controller with exactly these
//! permissions. This test names each one, so a missing or extra rule fails
//! here with the rule in the message.

use portcullis_e2e::Scenario;
use portcullis_e2e::access::{CONTROLLER_USER, token_of};
use portcullis_e2e::kubectl::Kubectl;

/// `kubectl auth can-i` arguments the controller must be allowed.
const ALLOWED: &[&[&str]] = &[
    &["list", "gatewayroutes.portcullis.dev", "-A"],
    &["watch", "gatewayroutes.portcullis.dev", "-A"],
    &["list", "apikeys.portcullis.dev", "-A"],
    &["watch", "apikeys.portcullis.dev", "-A"],
    &[
        "patch",
        "gatewayroutes.portcullis.dev",
        "--subresource=status",
        "-A",
    ],
    &[
        "patch",
        "apikeys.portcullis.dev",
        "--subresource=status",
        "-A",
    ],
    &["list", "services", "-A"],
    &["watch", "services", "-A"],
    &["list", "endpointslices.discovery.k8s.io", "-A"],
    &["watch", "endpointslices.discovery.k8s.io", "-A"],
    &["create", "tokenreviews.authentication.k8s.io"],
    &["create", "subjectaccessreviews.authorization.k8s.io"],
    &["create", "events.events.k8s.io", "-A"],
    &[
        "create",
        "leases.coordination.k8s.io",
        "-n",
        "portcullis-system",
    ],
    &[
        "get",
        "leases.coordination.k8s.io/portcullis-leader",
        "-n",
        "portcullis-system",
    ],
    &[
        "update",
        "leases.coordination.k8s.io/portcullis-leader",
        "-n",
        "portcullis-system",
    ],
];

/// `kubectl auth can-i` arguments the controller must be denied.
const DENIED: &[&[&str]] = &[
    &["get", "secrets", "-A"],
    &["list", "secrets", "-n", "portcullis-system"],
    &["list", "pods", "-A"],
    &["get", "configmaps", "-A"],
    &["create", "apikeys.portcullis.dev", "-A"],
    &["update", "apikeys.portcullis.dev", "-A"],
    &["delete", "apikeys.portcullis.dev", "-A"],
    &["patch", "apikeys.portcullis.dev", "-A"],
    &["update", "gatewayroutes.portcullis.dev", "-A"],
    &["delete", "gatewayroutes.portcullis.dev", "-A"],
    &["invoke", "gatewayroutes.portcullis.dev", "-A"],
    &[
        "update",
        "leases.coordination.k8s.io/other-lease",
        "-n",
        "portcullis-system",
    ],
    &["create", "rolebindings.rbac.authorization.k8s.io", "-A"],
    &["impersonate", "users"],
];

#[tokio::test]
async fn chart_rbac_is_least_privilege() {
    let Some(scenario) = Scenario::start_without_traffic("rbac").await else {
        return;
    };
    let suite = scenario.suite;
    // Local mode checks as the ServiceAccount's token user. Cluster mode checks
    // as the admin impersonating the ServiceAccount that the chart created.
    let (controller, impersonation) = if suite.local.is_some() {
        let kubeconfig = suite.scratch_path("rbac.kubeconfig");
        suite
            .access
            .write_kubeconfig(&kubeconfig, &token_of(CONTROLLER_USER), None);
        let kubectl = Kubectl::new(&kubeconfig, &suite.work_dir.join("kubectl-cache"));
        (kubectl, None)
    } else {
        (
            suite.kubectl.clone(),
            Some(format!("--as={CONTROLLER_USER}")),
        )
    };

    let mut wrong = Vec::new();
    for (expected, cases) in [("yes", ALLOWED), ("no", DENIED)] {
        for args in cases {
            let mut command = vec!["auth", "can-i"];
            command.extend_from_slice(args);
            command.extend(impersonation.as_deref());
            let output = controller.run(&command, None).await;
            let verdict = output.stdout.trim();
            if verdict != expected {
                wrong.push(format!(
                    "can-i {}: expected {expected}, got {verdict:?} {}",
                    args.join(" "),
                    output.stderr.trim()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the RBAC of {} does not match what the controller needs, for {CONTROLLER_USER}:\n{}",
        suite.settings.install_manifest.display(),
        wrong.join("\n")
    );
}
