//! Reading a config directory: every `.yaml`/`.yml` file, every document.
//!
//! Each file keeps its last good content: a file that stops parsing is
//! reported with its path and line and its previous objects keep serving.
//! A document that parses as YAML but is not a valid object is skipped and
//! reported, and the rest of the file is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use portcullis_api::{API_VERSION, ApiKey, GatewayRoute};
use portcullis_compile::{Problem, Resources};
use serde::Deserialize;

/// Objects a config directory may hold.
#[derive(Clone, Debug)]
enum Object {
    Route(Box<GatewayRoute>),
    Key(Box<ApiKey>),
    Slice(Box<EndpointSlice>),
}

/// Modification time, length and inode: enough to notice a rewrite without
/// reading every file on every poll. The inode catches an atomic rename
/// that keeps both the length and the time stamp (file systems with coarse
/// time stamps).
type Stamp = (Option<SystemTime>, u64, u64);

struct FileState {
    stamp: Stamp,
    objects: Vec<Object>,
    problems: Vec<Problem>,
    /// Reason the current content could not be used. Meanwhile `objects`
    /// keeps the last good version.
    error: Option<String>,
}

/// Result of one rescan.
pub struct Scan {
    /// True when any file's objects changed.
    pub changed: bool,
    /// Files or folders that failed this time. A broken file counts once
    /// per change of its content, not on every poll.
    pub failures: usize,
}

/// The state of one config directory.
pub struct ConfigDirectory {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

impl ConfigDirectory {
    pub fn new(root: PathBuf) -> Self {
        ConfigDirectory {
            root,
            files: BTreeMap::new(),
        }
    }

    /// Re-reads the files whose stamp changed and drops removed files.
    pub fn scan(&mut self) -> Scan {
        let mut scan = Scan {
            changed: false,
            failures: 0,
        };
        let mut present = Vec::new();
        scan.failures += collect_yaml_files(&self.root, &mut present);

        let before = self.files.len();
        self.files
            .retain(|path, _| present.iter().any(|(p, _)| p == path));
        scan.changed |= self.files.len() != before;

        for (path, stamp) in present {
            if self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read file: {e}"))
                .and_then(|text| parse_file(&path, &text));
            match parsed {
                Ok((objects, problems)) => {
                    self.files.insert(
                        path,
                        FileState {
                            stamp,
                            objects,
                            problems,
                            error: None,
                        },
                    );
                    scan.changed = true;
                }
                Err(message) => {
                    let kept = if self.files.contains_key(&path) {
                        "; keeping its last good version"
                    } else {
                        "; the file is ignored until it is fixed"
                    };
                    let message = format!("{message}{kept}");
                    scan.failures += 1;
                    // Remember the stamp so the same broken content is
                    // reported once, not on every poll.
                    let state = self.files.entry(path).or_insert_with(|| FileState {
                        stamp,
                        objects: Vec::new(),
                        problems: Vec::new(),
                        error: None,
                    });
                    state.stamp = stamp;
                    state.error = Some(message);
                    scan.changed = true;
                }
            }
        }
        scan
    }

    /// Collects every loaded object as compile input.
    pub fn resources(&self) -> Resources {
        let mut resources = Resources::default();
        for object in self.files.values().flat_map(|f| f.objects.iter()) {
            match object.clone() {
                Object::Route(route) => resources.routes.push(*route),
                Object::Key(key) => resources.keys.push(*key),
                Object::Slice(slice) => resources.endpoint_slices.push(*slice),
            }
        }
        resources
    }

    /// Files that do not parse and documents that were skipped, as
    /// problems for the log and the admin endpoint.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (path, file) in &self.files {
            if let Some(message) = &file.error {
                problems.push(Problem {
                    kind: "ConfigFile",
                    namespace: String::new(),
                    name: path.display().to_string(),
                    reason: "InvalidFile".into(),
                    message: message.clone(),
                });
            }
            problems.extend(file.problems.iter().cloned());
        }
        problems
    }
}

/// Collects the YAML files under `dir` and returns how many folders could
/// not be listed (each is logged).
fn collect_yaml_files(dir: &Path, out: &mut Vec<(PathBuf, Stamp)>) -> usize {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::error!(folder = %dir.display(), error = %error, "cannot list config folder; its files keep their last good version");
            return 1;
        }
    };
    let mut failures = 0;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        // Hidden entries include the `..data` indirection of ConfigMap
        // volumes, whose files are already visible through symlinks.
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'))
        {
            continue;
        }
        // `metadata` follows symlinks, as ConfigMap volumes need.
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            failures += collect_yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push((
                path,
                (metadata.modified().ok(), metadata.len(), inode(&metadata)),
            ));
        }
    }
    failures
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_metadata: &std::fs::Metadata) -> u64 {
    0
}

/// Parses every document of a file. A YAML syntax error fails the whole
/// file; an invalid object only skips its document.
fn parse_file(path: &Path, text: &str) -> Result<(Vec<Object>, Vec<Problem>), String> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value =
            serde_yaml::Value::deserialize(document).map_err(|error| match error.location() {
                Some(at) => format!(
                    "{}:{}:{}: invalid YAML: {error}",
                    path.display(),
                    at.line(),
                    at.column()
                ),
                None => format!("{}: invalid YAML: {error}", path.display()),
            })?;
        documents.push(value);
    }

    let starts = document_start_lines(text);
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (index, value) in documents.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let line = starts.get(index).copied().unwrap_or(1);
        match to_object(value) {
            Ok(Some(object)) => objects.push(object),
            Ok(None) => {}
            Err((kind, name, message)) => problems.push(Problem {
                kind,
                namespace: String::new(),
                name,
                reason: "InvalidDocument".into(),
                message: format!("{}:{line}: {message}", path.display()),
            }),
        }
    }
    Ok((objects, problems))
}

type DocumentError = (&'static str, String, String);

fn to_object(mut value: serde_yaml::Value) -> Result<Option<Object>, DocumentError> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_owned();
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_owned();
    default_namespace(&mut value);

    let invalid = |kind: &'static str, error: serde_yaml::Error| {
        (
            kind,
            name.clone(),
            format!("invalid {kind} {name:?}: {error}"),
        )
    };
    match (kind.as_str(), api_version.as_str()) {
        ("GatewayRoute", API_VERSION) => serde_yaml::from_value(value)
            .map(|r| Some(Object::Route(Box::new(r))))
            .map_err(|e| invalid("GatewayRoute", e)),
        ("ApiKey", API_VERSION) => serde_yaml::from_value(value)
            .map(|k| Some(Object::Key(Box::new(k))))
            .map_err(|e| invalid("ApiKey", e)),
        ("EndpointSlice", "discovery.k8s.io/v1") => serde_yaml::from_value(value)
            .map(|s| Some(Object::Slice(Box::new(s))))
            .map_err(|e| invalid("EndpointSlice", e)),
        _ => Err((
            "ConfigFile",
            name.clone(),
            format!(
                "document {kind:?} ({api_version:?}) is not a GatewayRoute or ApiKey of {API_VERSION}, or an EndpointSlice of discovery.k8s.io/v1; it is ignored"
            ),
        )),
    }
}

/// Objects without a namespace belong to `default`, as with kubectl.
fn default_namespace(value: &mut serde_yaml::Value) {
    if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_mapping_mut())
        && !metadata.contains_key("namespace")
    {
        metadata.insert("namespace".into(), "default".into());
    }
}

/// 1-based line where each document starts, for messages.
fn document_start_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (index, line) in text.lines().enumerate() {
        if line.starts_with("---") && index > 0 {
            starts.push(index + 2);
        } else if line.starts_with("---") && index == 0 {
            starts[0] = 2;
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_file_skips_invalid_document_only() {
        let text = "\
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: good}
spec: {method: GET, path: /a, target: {service: s, port: 80}}
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: bad}
spec: {method: FETCH, path: /b, target: {service: s, port: 80}}
";
        let (objects, problems) = parse_file(Path::new("routes.yaml"), text).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .message
                .starts_with("routes.yaml:6: invalid GatewayRoute \"bad\""),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn parse_file_reports_syntax_error_line() {
        let error = parse_file(Path::new("x.yaml"), "a: 1\nb: [unclosed\n").unwrap_err();
        assert!(error.starts_with("x.yaml:"), "{error}");
        assert!(error.contains("invalid YAML"), "{error}");
    }

    #[test]
    fn namespace_defaults_to_default() {
        let text = "apiVersion: portcullis.dev/v1alpha1\nkind: ApiKey\nmetadata: {name: k}\nspec: {keyHash: \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"}\n";
        let (objects, _) = parse_file(Path::new("k.yaml"), text).unwrap();
        let Object::Key(key) = &objects[0] else {
            panic!("expected an ApiKey")
        };
        assert_eq!(key.metadata.namespace.as_deref(), Some("default"));
    }
}
