#!/usr/bin/env python3
"""Check properties of manifests rendered by `helm template` from the chart.

Usage: check_rendered.py CASE FILE

CASE names the values the file was rendered with: `default` (values.yaml),
`all-features` (values-all-features.yaml) or `single-replica`
(--set replicas=1). Every failed expectation is printed, and the exit status
is 1 when any failed.
"""

import sys

import yaml

CONTROLLER_RULES = {
    # (apiGroup, resource): verbs
    ("portcullis.dev", "gatewayroutes"): {"get", "list", "watch"},
    ("portcullis.dev", "apikeys"): {"get", "list", "watch"},
    ("portcullis.dev", "gatewayroutes/status"): {"update", "patch"},
    ("portcullis.dev", "apikeys/status"): {"update", "patch"},
    ("", "services"): {"get", "list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"},
    ("authentication.k8s.io", "tokenreviews"): {"create"},
    ("authorization.k8s.io", "subjectaccessreviews"): {"create"},
    ("events.k8s.io", "events"): {"create", "patch"},
}

REVIEW_RULES = {
    ("authentication.k8s.io", "tokenreviews"): {"create"},
    ("authorization.k8s.io", "subjectaccessreviews"): {"create"},
}

CLUSTER_SCOPED_KINDS = {"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"}


class Checker:
    def __init__(self, documents):
        self.documents = documents
        self.failures = []

    def expect(self, condition, message):
        if not condition:
            self.failures.append(message)

    def find(self, kind, name=None, namespace=None):
        return [
            doc
            for doc in self.documents
            if doc["kind"] == kind
            and (name is None or doc["metadata"]["name"] == name)
            and (namespace is None or doc["metadata"].get("namespace") == namespace)
        ]

    def one(self, kind, name=None, namespace=None):
        matches = self.find(kind, name, namespace)
        self.expect(len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}")
        return matches[0] if matches else None


def rules_by_resource(role):
    """Flatten a Role's rules into {(apiGroup, resource): verbs}, keeping resourceNames apart."""
    flattened = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                if rule.get("resourceNames"):
                    key = (group, resource, tuple(rule["resourceNames"]))
                flattened.setdefault(key, set()).update(rule["verbs"])
    return flattened


def controller_container(deployment):
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def check_common(checker, release_namespace, lease_name):
    """Check what every rendering shares; return (deployment, container, ports) or None."""
    for doc in checker.documents:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind not in CLUSTER_SCOPED_KINDS:
            checker.expect("namespace" in doc["metadata"], f"{kind} {name} has no metadata.namespace")

    deployment = checker.one("Deployment", namespace=release_namespace)
    if deployment is None:
        return None
    pod = deployment["spec"]["template"]["spec"]
    container = controller_container(deployment)

    pod_security = pod["securityContext"]
    checker.expect(pod_security.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot is not true")
    checker.expect(
        pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "pod seccompProfile is not RuntimeDefault",
    )
    security = container["securityContext"]
    checker.expect(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
    checker.expect(security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    checker.expect(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities do not drop ALL")
    checker.expect(
        security.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        "container seccompProfile is not RuntimeDefault",
    )

    checker.expect(container["args"][0] == "run", f"first argument is {container['args'][0]!r}, expected 'run'")
    checker.expect(f"--lease-name={lease_name}" in container["args"], f"--lease-name={lease_name} missing")
    env = {item["name"]: item for item in container["env"]}
    for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        checker.expect(
            env.get(name, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field,
            f"{name} is not taken from {field}",
        )
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    checker.expect(container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, "readiness probe")
    checker.expect(container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}, "liveness probe")
    checker.expect(set(ports) == {"http", "admin"}, f"container ports are {sorted(ports)}")
    for section in ("requests", "limits"):
        checker.expect(
            {"cpu", "memory"} <= set(container.get("resources", {}).get(section, {})),
            f"resources.{section} lacks cpu or memory",
        )

    lease_role = checker.one("Role", namespace=release_namespace)
    if lease_role is not None:
        checker.expect(
            rules_by_resource(lease_role)
            == {
                ("coordination.k8s.io", "leases"): {"create"},
                ("coordination.k8s.io", "leases", (lease_name,)): {"get", "update"},
            },
            f"leader-election Role rules are {rules_by_resource(lease_role)}",
        )
    return deployment, container, ports


def check_default(checker):
    common = check_common(checker, "portcullis-system", "portcullis-leader")
    if common is None:
        return
    deployment, container, ports = common
    checker.expect(deployment["metadata"]["name"] == "portcullis", "Deployment is not named portcullis")
    checker.expect(deployment["spec"].get("replicas") == 2, "Deployment replicas is not 2")
    checker.expect(ports == {"http": 8080, "admin": 9090}, f"container ports are {ports}")
    checker.expect(
        container["args"]
        == [
            "run",
            "--listen=0.0.0.0:8080",
            "--admin-listen=0.0.0.0:9090",
            "--log-format=json",
            "--lease-name=portcullis-leader",
        ],
        f"default arguments are {container['args']}",
    )
    checker.expect(container["image"] == "portcullis:0.1.0", f"image is {container['image']}")

    cluster_role = checker.one("ClusterRole", "portcullis")
    if cluster_role is not None:
        actual = rules_by_resource(cluster_role)
        checker.expect(actual == CONTROLLER_RULES, f"ClusterRole portcullis rules are {actual}")
    binding = checker.one("ClusterRoleBinding", "portcullis")
    if binding is not None:
        checker.expect(binding["roleRef"]["name"] == "portcullis", "ClusterRoleBinding refers to another role")
        checker.expect(
            binding["subjects"]
            == [{"kind": "ServiceAccount", "name": "portcullis", "namespace": "portcullis-system"}],
            f"ClusterRoleBinding subjects are {binding['subjects']}",
        )
    checker.expect(not checker.find("RoleBinding", "portcullis"), "per-namespace RoleBindings rendered")

    service = checker.one("Service", "portcullis")
    if service is not None:
        checker.expect(service["spec"]["type"] == "ClusterIP", "traffic Service is not ClusterIP")
        checker.expect(
            service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            f"traffic Service ports are {service['spec']['ports']}",
        )
    admin = checker.one("Service", "portcullis-admin")
    if admin is not None:
        checker.expect(
            admin["spec"]["ports"] == [{"name": "admin", "port": 9090, "targetPort": "admin", "protocol": "TCP"}],
            f"admin Service ports are {admin['spec']['ports']}",
        )

    budget = checker.one("PodDisruptionBudget", "portcullis")
    if budget is not None:
        checker.expect(budget["spec"]["minAvailable"] == 1, "PodDisruptionBudget minAvailable is not 1")
    checker.expect(not checker.find("HorizontalPodAutoscaler"), "HPA rendered by default")
    checker.expect(not checker.find("ServiceMonitor"), "ServiceMonitor rendered by default")


def check_all_features(checker):
    common = check_common(checker, "portcullis-system", "portcullis-test-leader")
    if common is None:
        return
    deployment, container, _ports = common
    checker.expect("replicas" not in deployment["spec"], "Deployment sets replicas although the HPA scales it")
    for argument in (
        "--log-format=text",
        "--watch-namespaces=team-a,team-b",
        "--session-audience=portcullis",
        "--trusted-proxies=10.0.0.0/8,fd00::/8",
        "--context=ignored-in-cluster",
    ):
        checker.expect(argument in container["args"], f"argument {argument} missing from {container['args']}")

    # The ClusterRole keeps every rule; RoleBindings grant its namespaced rules
    # per watched namespace.
    cluster_role = checker.one("ClusterRole", "portcullis")
    if cluster_role is not None:
        checker.expect(rules_by_resource(cluster_role) == CONTROLLER_RULES, "ClusterRole portcullis rules changed")
    reviews = checker.one("ClusterRole", "portcullis-reviews")
    if reviews is not None:
        checker.expect(rules_by_resource(reviews) == REVIEW_RULES, "ClusterRole portcullis-reviews rules")
    checker.expect(not checker.find("ClusterRoleBinding", "portcullis"), "cluster-wide binding rendered")
    for namespace in ("team-a", "team-b"):
        binding = checker.one("RoleBinding", "portcullis", namespace)
        if binding is not None:
            checker.expect(
                binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "portcullis"},
                f"RoleBinding in {namespace} refers to {binding['roleRef']}",
            )
            checker.expect(
                binding["subjects"][0]["name"] == "portcullis-test",
                "RoleBinding does not bind the configured ServiceAccount",
            )

    service = checker.one("Service", "portcullis")
    if service is not None:
        spec = service["spec"]
        checker.expect(spec["type"] == "LoadBalancer", "traffic Service is not LoadBalancer")
        checker.expect(spec.get("externalTrafficPolicy") == "Local", "externalTrafficPolicy is not Local")
        checker.expect(spec["ports"][0].get("nodePort") == 30080, "nodePort is not 30080")

    autoscaler = checker.one("HorizontalPodAutoscaler", "portcullis")
    if autoscaler is not None:
        spec = autoscaler["spec"]
        checker.expect((spec["minReplicas"], spec["maxReplicas"]) == (3, 12), "HPA replica bounds")
        targets = {metric["resource"]["name"]: metric["resource"]["target"]["averageUtilization"] for metric in spec["metrics"]}
        checker.expect(targets == {"cpu": 70, "memory": 85}, f"HPA targets are {targets}")
    budget = checker.one("PodDisruptionBudget", "portcullis")
    if budget is not None:
        checker.expect(budget["spec"]["minAvailable"] == 2, "PodDisruptionBudget minAvailable is not 2")

    monitor = checker.one("ServiceMonitor", "portcullis")
    admin = checker.one("Service", "portcullis-admin")
    if monitor is not None and admin is not None:
        selector = monitor["spec"]["selector"]["matchLabels"]
        admin_labels = admin["metadata"]["labels"]
        checker.expect(
            all(admin_labels.get(key) == value for key, value in selector.items()),
            "ServiceMonitor selector does not match the admin Service",
        )
        traffic_labels = checker.one("Service", "portcullis")["metadata"]["labels"]
        checker.expect(
            not all(traffic_labels.get(key) == value for key, value in selector.items()),
            "ServiceMonitor selector also matches the traffic Service",
        )
        checker.expect(monitor["spec"]["endpoints"][0]["port"] == "admin", "ServiceMonitor does not scrape admin")


def check_single_replica(checker):
    check_common(checker, "portcullis-system", "portcullis-leader")
    checker.expect(
        not checker.find("PodDisruptionBudget"),
        "PodDisruptionBudget rendered for one replica, which would block node drains",
    )


CASES = {
    "default": check_default,
    "all-features": check_all_features,
    "single-replica": check_single_replica,
}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CASES:
        print(f"usage: {sys.argv[0]} {{{','.join(CASES)}}} FILE", file=sys.stderr)
        return 2
    case, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as file:
        documents = [doc for doc in yaml.safe_load_all(file) if doc]
    checker = Checker(documents)
    CASES[case](checker)
    for failure in checker.failures:
        print(f"FAIL [{case}]: {failure}", file=sys.stderr)
    return 1 if checker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
