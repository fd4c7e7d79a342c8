//! The objects of `manifests/install.yaml` that local mode applies.

use std::path::Path;

use serde::Deserialize;

/// Kinds that local mode applies: the namespace, the CRDs and the chart's
/// RBAC. The Deployment, Services and PodDisruptionBudget are left out
/// because the suite runs the controller as a local process instead.
const LOCAL_KINDS: [&str; 7] = [
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The documents of an install manifest.
#[derive(Debug, Clone)]
pub struct InstallManifest {
    documents: Vec<serde_json::Value>,
}

impl InstallManifest {
    /// Reads and parses a multi-document YAML file.
    ///
    /// # Panics
    ///
    /// Panics when the file cannot be read or is not YAML.
    pub fn read(path: &Path) -> InstallManifest {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("failed to read {}: {error}", path.display()));
        let documents = serde_yaml::Deserializer::from_str(&text)
            .map(|document| {
                serde_json::Value::deserialize(document)
                    .unwrap_or_else(|error| panic!("{} is not valid YAML: {error}", path.display()))
            })
            .filter(|value| !value.is_null())
            .collect();
        InstallManifest { documents }
    }

    /// Returns the namespace, CRDs and RBAC objects as one YAML stream for
    /// `kubectl apply -f -`.
    pub fn local_objects_yaml(&self) -> String {
        self.documents
            .iter()
            .filter(|document| {
                document["kind"]
                    .as_str()
                    .is_some_and(|kind| LOCAL_KINDS.contains(&kind))
            })
            .map(|document| serde_yaml::to_string(document).expect("JSON values serialize as YAML"))
            .collect::<Vec<_>>()
            .join("---\n")
    }

    /// Returns the object of `kind` named `name`.
    ///
    /// # Panics
    ///
    /// Panics when the manifest has no such object.
    pub fn object(&self, kind: &str, name: &str) -> &serde_json::Value {
        self.documents
            .iter()
            .find(|document| document["kind"] == kind && document["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the install manifest has no {kind} {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_objects_leave_out_workloads() {
        let manifest = InstallManifest::read(
            &crate::settings::workspace_root().join("manifests/install.yaml"),
        );
        let yaml = manifest.local_objects_yaml();
        assert!(yaml.contains("kind: CustomResourceDefinition"));
        assert!(yaml.contains("kind: ClusterRoleBinding"));
        assert!(!yaml.contains("kind: Deployment"));
        assert!(!yaml.contains("kind: Service\n"));
    }
}
