//! ApiKeys in a `portcullis serve` config directory.
//!
//! `serve` watches the directory and reloads on every change, so each write
//! replaces a whole file atomically (temporary file in the same directory,
//! then rename) and never exposes a half-written file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use portcullis_api::{API_VERSION, ApiKey, ApiKeySpec, GatewayRoute};
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::{StoreError, Updated};
use crate::spec_patch::{apply_to_yaml, spec_merge_patch};
use crate::yaml_documents::YamlStream;

/// Namespace of documents without `metadata.namespace`, as in a cluster.
const DEFAULT_NAMESPACE: &str = "default";

/// A config directory, limited to one namespace.
pub struct DirectoryStore {
    dir: PathBuf,
    namespace: String,
}

/// One YAML document of a file in the directory.
struct Document {
    path: PathBuf,
    /// Full text of the file, as read.
    file_text: String,
    /// Position of the document in the file.
    index: usize,
    value: Value,
}

impl DirectoryStore {
    /// Opens `dir`, which must be an existing directory.
    pub fn open(dir: &Path, namespace: Option<String>) -> anyhow::Result<Self> {
        let metadata = fs::metadata(dir)
            .with_context(|| format!("cannot open config directory {}", dir.display()))?;
        if !metadata.is_dir() {
            anyhow::bail!("--config {} is not a directory", dir.display());
        }
        Ok(DirectoryStore {
            dir: dir.to_owned(),
            namespace: namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        })
    }

    /// Namespace that the command works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn location(&self) -> String {
        format!("config directory {}", self.dir.display())
    }

    /// Writes a new file holding the ApiKey, unless an ApiKey with that name
    /// exists anywhere in the directory.
    pub fn create(&self, key: &ApiKey) -> Result<(), StoreError> {
        let name = key.metadata.name.clone().unwrap_or_default();
        if !self.find_all("ApiKey", &name)?.is_empty() {
            return Err(self.already_exists(&name));
        }

        let document = serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": "ApiKey",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": key.spec,
        });
        let text = serde_yaml::to_string(&document).context("cannot serialize the ApiKey")?;

        let path = self.dir.join(self.file_name_for(&name));
        match create_atomically(&path, text.as_bytes()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::Other(anyhow::anyhow!(
                    "cannot create {}: the file already exists; move it away or add the ApiKey \
                     to it by hand",
                    path.display()
                )))
            }
            Err(error) => Err(StoreError::Other(
                anyhow::Error::new(error).context(format!("cannot write {}", path.display())),
            )),
        }
    }

    /// Edits the spec of an ApiKey in place, keeping every other document of
    /// its file byte for byte.
    pub fn update<T>(
        &self,
        name: &str,
        mut edit: impl FnMut(&mut ApiKeySpec) -> Result<T, String>,
    ) -> Result<Updated<T>, StoreError> {
        let mut document = self.find_one(name)?;
        let key: ApiKey = serde_yaml::from_value(document.value.clone()).map_err(|error| {
            StoreError::Invalid {
                name: name.to_owned(),
                message: format!(
                    "{} (document {}) is not a valid ApiKey: {error}",
                    document.path.display(),
                    document.index + 1
                ),
            }
        })?;

        let before = key.spec;
        let mut after = before.clone();
        let outcome = edit(&mut after).map_err(|message| StoreError::Invalid {
            name: name.to_owned(),
            message,
        })?;

        let patch = spec_merge_patch(&before, &after);
        if !patch.is_empty() {
            let spec = document
                .value
                .get_mut("spec")
                .and_then(Value::as_mapping_mut)
                .context("the ApiKey has no spec mapping")?;
            apply_to_yaml(spec, &patch).context("cannot serialize the new spec")?;
            self.write_document(&document)?;
        }
        Ok(Updated {
            before,
            after,
            outcome,
        })
    }

    /// Lists the ApiKeys of the namespace, in file order.
    pub fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.list_kind("ApiKey")
    }

    /// Lists the GatewayRoutes of the namespace, in file order.
    pub fn list_routes(&self) -> Result<Vec<GatewayRoute>, StoreError> {
        self.list_kind("GatewayRoute")
    }

    fn list_kind<K: DeserializeOwned>(&self, kind: &str) -> Result<Vec<K>, StoreError> {
        let mut objects = Vec::new();
        for document in self.documents()? {
            if !self.matches(&document.value, kind, None) {
                continue;
            }
            match serde_yaml::from_value(document.value) {
                Ok(object) => objects.push(object),
                Err(error) => eprintln!(
                    "warning: skipped {} (document {}): not a valid {kind}: {error}",
                    document.path.display(),
                    document.index + 1
                ),
            }
        }
        Ok(objects)
    }

    fn find_one(&self, name: &str) -> Result<Document, StoreError> {
        let mut found = self.find_all("ApiKey", name)?;
        match found.len() {
            0 => Err(StoreError::NotFound {
                name: name.to_owned(),
                namespace: self.namespace.clone(),
                location: self.location(),
            }),
            1 => Ok(found.remove(0)),
            _ => {
                let places: Vec<String> = found
                    .iter()
                    .map(|d| format!("{} (document {})", d.path.display(), d.index + 1))
                    .collect();
                Err(StoreError::Invalid {
                    name: name.to_owned(),
                    message: format!(
                        "it is defined more than once: {}; keep one definition",
                        places.join(", ")
                    ),
                })
            }
        }
    }

    fn find_all(&self, kind: &str, name: &str) -> Result<Vec<Document>, StoreError> {
        Ok(self
            .documents()?
            .into_iter()
            .filter(|d| self.matches(&d.value, kind, Some(name)))
            .collect())
    }

    /// Returns whether a document is a Portcullis object of `kind` in this store's
    /// namespace, with `name` if given.
    fn matches(&self, value: &Value, kind: &str, name: Option<&str>) -> bool {
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let metadata = value.get("metadata");
        let field = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);

        api_version == Some(API_VERSION)
            && value.get("kind").and_then(Value::as_str) == Some(kind)
            && name.is_none_or(|name| field("name") == Some(name))
            && field("namespace").unwrap_or(DEFAULT_NAMESPACE) == self.namespace
    }

    /// Reads every document of every `.yaml` and `.yml` file in the
    /// directory and its subdirectories, as `serve` does. Documents that are
    /// not valid YAML are skipped with a warning.
    fn documents(&self) -> anyhow::Result<Vec<Document>> {
        let mut documents = Vec::new();
        for path in self.yaml_files()? {
            let file_text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let stream = YamlStream::split(&file_text);
            for (index, text) in stream.documents().enumerate() {
                match serde_yaml::from_str::<Value>(text) {
                    Ok(Value::Null) => {}
                    Ok(value) => documents.push(Document {
                        path: path.clone(),
                        file_text: file_text.clone(),
                        index,
                        value,
                    }),
                    Err(error) => eprintln!(
                        "warning: skipped {} (document {}): invalid YAML: {error}",
                        path.display(),
                        index + 1
                    ),
                }
            }
        }
        Ok(documents)
    }

    fn yaml_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        collect_yaml_files(&self.dir, &mut files)?;
        Ok(files)
    }

    /// Replaces one document in its file, failing if the file changed since
    /// it was read.
    fn write_document(&self, document: &Document) -> Result<(), StoreError> {
        let body = serde_yaml::to_string(&document.value).context("cannot serialize the ApiKey")?;
        let stream = YamlStream::split(&document.file_text);
        let new_text = stream.replace(document.index, &body);

        let current = fs::read_to_string(&document.path)
            .with_context(|| format!("cannot read {}", document.path.display()))?;
        if current != document.file_text {
            return Err(StoreError::Other(anyhow::anyhow!(
                "{} changed while the ApiKey was being updated; run the command again",
                document.path.display()
            )));
        }

        replace_atomically(&document.path, new_text.as_bytes())
            .with_context(|| format!("cannot write {}", document.path.display()))?;
        Ok(())
    }

    /// File name for a new ApiKey: `apikey-NAME.yaml` in the default
    /// namespace, `apikey-NAMESPACE-NAME.yaml` in others, so keys of the same
    /// name in two namespaces do not share a file.
    fn file_name_for(&self, name: &str) -> String {
        if self.namespace == DEFAULT_NAMESPACE {
            format!("apikey-{name}.yaml")
        } else {
            format!("apikey-{}-{name}.yaml", self.namespace)
        }
    }

    fn already_exists(&self, name: &str) -> StoreError {
        StoreError::AlreadyExists {
            name: name.to_owned(),
            namespace: self.namespace.clone(),
            location: self.location(),
        }
    }
}

/// Appends the `.yaml` and `.yml` files under `dir` to `files`, in path
/// order, descending into subdirectories. Hidden entries are skipped: they
/// include the `..data` folder of a ConfigMap volume, whose files are
/// visible through symbolic links, and this module's temporary files.
fn collect_yaml_files(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("cannot list directory {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list directory {}", dir.display()))?;
        paths.push(entry.path());
    }
    paths.sort();

    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        // `metadata` follows symbolic links; a dangling link is skipped.
        let Ok(metadata) = fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            collect_yaml_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    Ok(())
}

/// Replaces the file at `path` with `contents` in one rename, keeping its
/// permissions. A symbolic link is followed, so the link stays in place and
/// its target is replaced.
fn replace_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = fs::canonicalize(path)?;
    let permissions = fs::metadata(&target)?.permissions();
    let temporary = write_temporary(&target, contents)?;

    let result =
        fs::set_permissions(&temporary, permissions).and_then(|()| fs::rename(&temporary, &target));
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result?;
    sync_parent(&target)
}

/// Creates the file at `path` with `contents`, failing with
/// `AlreadyExists` if it exists. The complete file appears at once, through
/// a hard link from a temporary file.
fn create_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temporary = write_temporary(path, contents)?;
    let result = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    result?;
    sync_parent(path)
}

/// Writes `contents` to a new hidden file next to `path` and flushes it to
/// disk. The name does not end in `.yaml`, so a directory watcher that reads
/// only YAML files ignores it.
fn write_temporary(path: &Path, contents: &[u8]) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("apikey");

    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|error| io::Error::other(error.to_string()))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let temporary = dir.join(format!(".{file_name}.{suffix}.tmp"));

    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(temporary)
}

/// Flushes the directory entry of `path`, so the rename survives a crash.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_api::KeyScope;
    use portcullis_compile::KeyHash;

    const MIXED_FILE: &str = "\
# Demo routes and the partner key.
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: hello}   # kept as written
spec: {method: GET, path: /hello, allowedApiKeyIds: [partner], target: {service: hello, port: 8080}}
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner
spec:
  keyHash: \"sha256:1111111111111111111111111111111111111111111111111111111111111111\"
  description: Reporting partner
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata: {name: partner, namespace: other}
spec:
  keyHash: \"sha256:2222222222222222222222222222222222222222222222222222222222222222\"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hello-1
  labels: {kubernetes.io/service-name: hello}
addressType: IPv4
endpoints: [{addresses: [127.0.0.1]}]
ports: [{port: 8080}]
";

    fn store(dir: &Path, namespace: Option<&str>) -> DirectoryStore {
        DirectoryStore::open(dir, namespace.map(str::to_owned)).unwrap()
    }

    fn new_key(name: &str) -> ApiKey {
        ApiKey::new(
            name,
            ApiKeySpec {
                key_hash: KeyHash::of_key(name.as_bytes()).to_spec_string(),
                previous_key_hashes: Vec::new(),
                scope: KeyScope::Invoke,
                active: true,
                expires_at: None,
                description: None,
            },
        )
    }

    fn documents_of(text: &str) -> Vec<String> {
        YamlStream::split(text)
            .documents()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn update_keeps_other_documents_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        fs::write(&path, MIXED_FILE).unwrap();
        let before = documents_of(MIXED_FILE);

        store(dir.path(), None)
            .update("partner", |spec| {
                spec.active = false;
                Ok(())
            })
            .unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let after = documents_of(&text);
        assert_eq!(after.len(), 4);
        assert_eq!(after[0], before[0]);
        assert_eq!(after[2], before[2]);
        assert_eq!(after[3], before[3]);
        assert_ne!(after[1], before[1]);
    }

    #[test]
    fn update_edits_only_changed_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        fs::write(&path, MIXED_FILE).unwrap();

        store(dir.path(), None)
            .update("partner", |spec| {
                spec.active = false;
                Ok(())
            })
            .unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let edited: Value = serde_yaml::from_str(&documents_of(&text)[1]).unwrap();
        let key: ApiKey = serde_yaml::from_value(edited.clone()).unwrap();
        assert!(!key.spec.active);
        assert_eq!(key.spec.description.as_deref(), Some("Reporting partner"));
        assert!(
            edited["spec"].get("scope").is_none(),
            "unchanged default was added"
        );
        assert_eq!(key.metadata.name.as_deref(), Some("partner"));
    }

    #[test]
    fn update_selects_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        fs::write(&path, MIXED_FILE).unwrap();
        let before = documents_of(MIXED_FILE);

        store(dir.path(), Some("other"))
            .update("partner", |spec| {
                spec.active = false;
                Ok(())
            })
            .unwrap();

        let after = documents_of(&fs::read_to_string(&path).unwrap());
        assert_eq!(after[1], before[1]);
        assert!(after[2].contains("active: false"), "{}", after[2]);
    }

    #[test]
    fn update_without_change_leaves_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        fs::write(&path, MIXED_FILE).unwrap();

        store(dir.path(), None)
            .update("partner", |_| Ok(()))
            .unwrap();

        assert_eq!(fs::read_to_string(&path).unwrap(), MIXED_FILE);
    }

    #[test]
    fn update_error_leaves_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.yaml");
        fs::write(&path, MIXED_FILE).unwrap();

        let result = store(dir.path(), None).update("partner", |spec| -> Result<(), String> {
            spec.active = false;
            Err("edit failed".into())
        });

        assert!(matches!(result, Err(StoreError::Invalid { .. })));
        assert_eq!(fs::read_to_string(&path).unwrap(), MIXED_FILE);
    }

    #[test]
    fn update_missing_key_names_namespace() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("all.yaml"), MIXED_FILE).unwrap();

        let error = store(dir.path(), Some("acme"))
            .update("partner", |_| Ok(()))
            .unwrap_err();

        assert!(matches!(error, StoreError::NotFound { .. }));
        assert!(error.to_string().contains("namespace \"acme\""), "{error}");
    }

    #[test]
    fn update_rejects_duplicate_definitions() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.yaml"), MIXED_FILE).unwrap();
        fs::write(dir.path().join("b.yml"), MIXED_FILE).unwrap();

        let error = store(dir.path(), None)
            .update("partner", |_| Ok(()))
            .unwrap_err();

        assert!(error.to_string().contains("more than once"), "{error}");
    }

    #[test]
    fn update_follows_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::write(real.join("all.yaml"), MIXED_FILE).unwrap();
        let config = dir.path().join("config");
        fs::create_dir(&config).unwrap();
        std::os::unix::fs::symlink(real.join("all.yaml"), config.join("all.yaml")).unwrap();

        store(&config, None)
            .update("partner", |spec| {
                spec.active = false;
                Ok(())
            })
            .unwrap();

        assert!(
            fs::symlink_metadata(config.join("all.yaml"))
                .unwrap()
                .is_symlink()
        );
        assert!(
            fs::read_to_string(real.join("all.yaml"))
                .unwrap()
                .contains("active: false")
        );
    }

    #[test]
    fn create_writes_new_file() {
        let dir = tempfile::tempdir().unwrap();

        store(dir.path(), None).create(&new_key("fresh")).unwrap();

        let text = fs::read_to_string(dir.path().join("apikey-fresh.yaml")).unwrap();
        let key: ApiKey = serde_yaml::from_str(&text).unwrap();
        assert_eq!(key.metadata.name.as_deref(), Some("fresh"));
        assert_eq!(key.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(key.spec, new_key("fresh").spec);
        assert!(text.contains("kind: ApiKey"));
    }

    #[test]
    fn create_names_file_after_namespace() {
        let dir = tempfile::tempdir().unwrap();

        store(dir.path(), Some("acme"))
            .create(&new_key("fresh"))
            .unwrap();

        assert!(dir.path().join("apikey-acme-fresh.yaml").is_file());
    }

    #[test]
    fn create_rejects_existing_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("all.yaml"), MIXED_FILE).unwrap();

        let error = store(dir.path(), None)
            .create(&new_key("partner"))
            .unwrap_err();

        assert!(matches!(error, StoreError::AlreadyExists { .. }));
        assert!(
            error.to_string().contains("portcullis key rotate partner"),
            "{error}"
        );
        assert!(!dir.path().join("apikey-partner.yaml").exists());
    }

    #[test]
    fn create_never_overwrites_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apikey-fresh.yaml");
        fs::write(&path, "# someone else's notes\n").unwrap();

        let error = store(dir.path(), None)
            .create(&new_key("fresh"))
            .unwrap_err();

        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "# someone else's notes\n"
        );
    }

    #[test]
    fn writes_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("all.yaml"), MIXED_FILE).unwrap();
        let store = store(dir.path(), None);

        store.create(&new_key("fresh")).unwrap();
        store
            .update("partner", |spec| {
                spec.active = false;
                Ok(())
            })
            .unwrap();

        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["all.yaml", "apikey-fresh.yaml"]);
    }

    #[test]
    fn update_finds_key_in_subdirectory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("team").join("keys");
        fs::create_dir_all(&nested).unwrap();
        fs::write(nested.join("all.yml"), MIXED_FILE).unwrap();

        store(dir.path(), None)
            .update("partner", |spec| {
                spec.active = false;
                Ok(())
            })
            .unwrap();

        assert!(
            fs::read_to_string(nested.join("all.yml"))
                .unwrap()
                .contains("active: false")
        );
    }

    #[test]
    fn other_api_versions_are_not_keys() {
        let dir = tempfile::tempdir().unwrap();
        let text = MIXED_FILE.replace("portcullis.dev/v1alpha1", "portcullis.dev/v2");
        fs::write(dir.path().join("all.yaml"), text).unwrap();

        assert!(store(dir.path(), None).list_keys().unwrap().is_empty());
    }

    #[test]
    fn list_reads_namespace_only() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("all.yaml"), MIXED_FILE).unwrap();
        fs::write(dir.path().join("notes.txt"), "kind: ApiKey\n").unwrap();

        let store = store(dir.path(), None);
        let keys = store.list_keys().unwrap();
        let routes = store.list_routes().unwrap();

        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0].spec.description.as_deref(),
            Some("Reporting partner")
        );
        assert_eq!(routes.len(), 1);
        assert_eq!(
            routes[0].spec.allowed_api_key_ids,
            Some(vec!["partner".to_owned()])
        );
    }
}
