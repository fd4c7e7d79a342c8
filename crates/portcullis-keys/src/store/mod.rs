//! Storage of ApiKeys: a cluster through the Kubernetes API, or a config
//! directory of YAML files.

mod cluster;
mod directory;

use portcullis_api::{ApiKey, ApiKeySpec, GatewayRoute};

pub use cluster::ClusterStore;
pub use directory::DirectoryStore;

use crate::cli::TargetArgs;

/// Field manager recorded in `managedFields` for every write.
pub const FIELD_MANAGER: &str = "portcullis";

/// A failed store operation, worded for the person running the command.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named ApiKey does not exist.
    #[error(
        "ApiKey {name:?} not found in namespace {namespace:?} of {location}; \
         check the name and -n/--namespace (`portcullis key list` with the same flags shows \
         the existing keys)"
    )]
    NotFound {
        /// Name of the ApiKey.
        name: String,
        /// Namespace that was searched.
        namespace: String,
        /// The cluster or directory that was searched.
        location: String,
    },

    /// An ApiKey with that name already exists.
    #[error(
        "ApiKey {name:?} already exists in namespace {namespace:?} of {location}; \
         to give it a new key, run `portcullis key rotate {name}` with the same -n and \
         --config or --context flags"
    )]
    AlreadyExists {
        /// Name of the ApiKey.
        name: String,
        /// Namespace of the ApiKey.
        namespace: String,
        /// The cluster or directory that contains it.
        location: String,
    },

    /// RBAC denied the request.
    #[error(
        "permission denied: the current user may not {verb} {resource} in namespace \
         {namespace:?}. The API server returned: {message}. Ask a cluster administrator \
         for a Role that grants `{verb}` on `{resource}` in that namespace"
    )]
    Forbidden {
        /// Verb of the denied request (`get`, `create`, `patch`, `list`).
        verb: &'static str,
        /// Resource with its API group, for example `apikeys.portcullis.dev`.
        resource: &'static str,
        /// Namespace of the denied request.
        namespace: String,
        /// Message of the API server's 403 response.
        message: String,
    },

    /// The API server rejected the credentials.
    #[error(
        "the API server at {server} rejected the kubeconfig credentials (401 Unauthorized): \
         {message}. Log in again or choose another --context"
    )]
    Unauthorized {
        /// URL of the API server.
        server: String,
        /// Message of the API server's 401 response.
        message: String,
    },

    /// The API server could not be reached.
    #[error(
        "cannot reach the Kubernetes API server at {server}: {cause}. Check that the cluster \
         is running and that --kubeconfig and --context select it"
    )]
    Unreachable {
        /// URL of the API server.
        server: String,
        /// Root cause, for example `Connection refused (os error 111)`.
        cause: String,
    },

    /// The cluster does not serve the Portcullis resource types.
    #[error(
        "the API server at {server} does not serve {resource}; install the \
         CustomResourceDefinitions with `portcullis crds | kubectl apply -f -`"
    )]
    CrdMissing {
        /// URL of the API server.
        server: String,
        /// Resource with its API group.
        resource: &'static str,
    },

    /// The ApiKey kept changing between read and write.
    #[error(
        "ApiKey {name:?} was changed by someone else {attempts} times while it was being \
         updated; run the command again"
    )]
    Conflict {
        /// Name of the ApiKey.
        name: String,
        /// Number of attempts made.
        attempts: u32,
    },

    /// The API server or the command rejected the new object.
    #[error("invalid ApiKey {name:?}: {message}")]
    Invalid {
        /// Name of the ApiKey.
        name: String,
        /// Description of the problem.
        message: String,
    },

    /// Any other failure, with its context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// An ApiKey spec before and after an update.
#[derive(Debug)]
pub struct Updated<T> {
    /// The spec as read.
    pub before: ApiKeySpec,
    /// The spec as written.
    pub after: ApiKeySpec,
    /// Return value of the edit function for the write that succeeded.
    pub outcome: T,
}

/// A cluster or a config directory.
pub enum Store {
    /// The Kubernetes API.
    Cluster(ClusterStore),
    /// A `portcullis serve` config directory.
    Directory(DirectoryStore),
}

impl Store {
    /// Opens the target that the command-line flags select.
    pub async fn open(target: &TargetArgs) -> anyhow::Result<Self> {
        if let Some(namespace) = &target.namespace {
            validate_namespace(namespace)?;
        }
        match &target.config {
            Some(dir) => Ok(Store::Directory(DirectoryStore::open(
                dir,
                target.namespace.clone(),
            )?)),
            None => Ok(Store::Cluster(ClusterStore::connect(target).await?)),
        }
    }

    /// Namespace that the command works in.
    pub fn namespace(&self) -> &str {
        match self {
            Store::Cluster(store) => store.namespace(),
            Store::Directory(store) => store.namespace(),
        }
    }

    /// Creates an ApiKey, failing with [`StoreError::AlreadyExists`] when
    /// one with the same name exists. An existing ApiKey is never replaced.
    pub async fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        match self {
            Store::Cluster(store) => store.create(key).await,
            Store::Directory(store) => store.create(key),
        }
    }

    /// Reads an ApiKey, lets `edit` change a copy of its spec, and writes
    /// back only the fields that changed. Nothing is written when nothing
    /// changed. In a cluster, a concurrent change makes the write fail and
    /// the read and edit run again.
    pub async fn update<T>(
        &self,
        name: &str,
        edit: impl FnMut(&mut ApiKeySpec) -> Result<T, String>,
    ) -> Result<Updated<T>, StoreError> {
        match self {
            Store::Cluster(store) => store.update(name, edit).await,
            Store::Directory(store) => store.update(name, edit),
        }
    }

    /// Lists the ApiKeys of the namespace.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        match self {
            Store::Cluster(store) => store.list_keys().await,
            Store::Directory(store) => store.list_keys(),
        }
    }

    /// Lists the GatewayRoutes of the namespace.
    pub async fn list_routes(&self) -> Result<Vec<GatewayRoute>, StoreError> {
        match self {
            Store::Cluster(store) => store.list_routes().await,
            Store::Directory(store) => store.list_routes(),
        }
    }
}

/// Checks that `name` is a valid ApiKey name: a DNS subdomain name
/// (RFC 1123), as Kubernetes requires for object names. The check also keeps
/// the name safe to use in a file name.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if is_dns_subdomain(name) {
        return Ok(());
    }
    anyhow::bail!(
        "invalid ApiKey name {name:?}: use at most 253 lowercase letters, digits, '-' and '.', \
         starting and ending with a letter or digit"
    )
}

fn validate_namespace(namespace: &str) -> anyhow::Result<()> {
    if namespace.len() <= 63 && is_dns_label(namespace) {
        return Ok(());
    }
    anyhow::bail!(
        "invalid namespace {namespace:?}: use at most 63 lowercase letters, digits and '-', \
         starting and ending with a letter or digit"
    )
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn is_dns_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_subdomain_rules() {
        for valid in ["partner", "partner-1", "a", "team.partner", "0abc"] {
            assert!(validate_name(valid).is_ok(), "{valid:?} was rejected");
        }
        let too_long = "a".repeat(254);
        for invalid in [
            "",
            "Partner",
            "-partner",
            "partner-",
            "part_ner",
            "../etc",
            "a/b",
            "a..b",
            ".a",
            too_long.as_str(),
        ] {
            assert!(validate_name(invalid).is_err(), "{invalid:?} was accepted");
        }
    }

    #[test]
    fn namespaces_follow_dns_label_rules() {
        assert!(validate_namespace("acme-prod").is_ok());
        assert!(validate_namespace("acme.prod").is_err());
        assert!(validate_namespace(&"a".repeat(64)).is_err());
    }
}
