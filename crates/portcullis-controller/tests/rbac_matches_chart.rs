//! The RBAC the controller documents (`rbac.yaml`, used by this crate's
//! cluster tests) and the RBAC the Helm chart renders into
//! `manifests/install.yaml` must grant the same (group, resource, verb)
//! triples, so neither the tests nor the chart drift from the other.

use std::collections::BTreeSet;

use serde::Deserialize;

type Grants = BTreeSet<(String, String, String)>;

fn grants(path: &str, kind: &str, name: &str) -> Grants {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Grants::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).unwrap();
        if value["kind"].as_str() != Some(kind) || value["metadata"]["name"].as_str() != Some(name)
        {
            continue;
        }
        for rule in value["rules"].as_sequence().into_iter().flatten() {
            for group in rule["apiGroups"].as_sequence().into_iter().flatten() {
                for resource in rule["resources"].as_sequence().into_iter().flatten() {
                    for verb in rule["verbs"].as_sequence().into_iter().flatten() {
                        out.insert((
                            group.as_str().unwrap().to_owned(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    assert!(!out.is_empty(), "{path} has no {kind} {name} with rules");
    out
}

const RBAC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rbac.yaml");
const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../manifests/install.yaml");

#[test]
fn cluster_role_matches_chart() {
    assert_eq!(
        grants(RBAC, "ClusterRole", "portcullis"),
        grants(INSTALL, "ClusterRole", "portcullis")
    );
}

#[test]
fn lease_role_matches_chart() {
    assert_eq!(
        grants(RBAC, "Role", "portcullis-leader-election"),
        grants(INSTALL, "Role", "portcullis-leader-election")
    );
}
