//! Field-level differences between two ApiKey specs.
//!
//! Both targets write only the spec fields a command changed: the cluster as
//! a JSON merge patch, the config directory by editing the fields in place so
//! unchanged fields keep their position and form.

use portcullis_api::ApiKeySpec;
use serde_json::{Map, Value};

/// Returns the changed top-level spec fields as a JSON merge patch: each
/// changed field with its new value, and `null` for a field that the new spec
/// omits (for example `previousKeyHashes` after the last entry is pruned).
pub fn spec_merge_patch(old: &ApiKeySpec, new: &ApiKeySpec) -> Map<String, Value> {
    let old = to_fields(old);
    let new = to_fields(new);
    let mut patch = Map::new();

    for (field, value) in &new {
        if old.get(field) != Some(value) {
            patch.insert(field.clone(), value.clone());
        }
    }
    for field in old.keys() {
        if !new.contains_key(field) {
            patch.insert(field.clone(), Value::Null);
        }
    }
    patch
}

/// Applies a patch from [`spec_merge_patch`] to the `spec` mapping of a YAML
/// document. Existing fields keep their position and new ones are appended.
pub fn apply_to_yaml(
    spec: &mut serde_yaml::Mapping,
    patch: &Map<String, Value>,
) -> Result<(), serde_yaml::Error> {
    for (field, value) in patch {
        let key = serde_yaml::Value::String(field.clone());
        if value.is_null() {
            spec.shift_remove(&key);
        } else {
            spec.insert(key, serde_yaml::to_value(value)?);
        }
    }
    Ok(())
}

fn to_fields(spec: &ApiKeySpec) -> Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(fields)) => fields,
        // ApiKeySpec is a struct of strings, booleans and lists, so it
        // always serializes to an object.
        _ => unreachable!("an ApiKeySpec serializes to a JSON object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_api::{KeyScope, PreviousKeyHash};
    use serde_json::json;

    fn spec() -> ApiKeySpec {
        ApiKeySpec {
            key_hash: format!("sha256:{}", "a".repeat(64)),
            previous_key_hashes: Vec::new(),
            scope: KeyScope::Invoke,
            active: true,
            expires_at: None,
            description: Some("partner".into()),
        }
    }

    #[test]
    fn patch_is_empty_without_changes() {
        assert!(spec_merge_patch(&spec(), &spec()).is_empty());
    }

    #[test]
    fn patch_contains_only_changed_fields() {
        let mut new = spec();
        new.active = false;

        let patch = spec_merge_patch(&spec(), &new);

        assert_eq!(Value::Object(patch), json!({"active": false}));
    }

    #[test]
    fn patch_nulls_removed_fields() {
        let mut old = spec();
        old.previous_key_hashes = vec![PreviousKeyHash {
            hash: format!("sha256:{}", "b".repeat(64)),
            expires_at: "2030-01-01T00:00:00Z".into(),
        }];
        let mut new = spec();
        new.key_hash = format!("sha256:{}", "c".repeat(64));
        new.description = None;

        let patch = spec_merge_patch(&old, &new);

        assert_eq!(
            Value::Object(patch),
            json!({
                "keyHash": format!("sha256:{}", "c".repeat(64)),
                "previousKeyHashes": null,
                "description": null,
            })
        );
    }

    #[test]
    fn apply_keeps_field_order_and_unknown_fields() {
        let mut mapping: serde_yaml::Mapping =
            serde_yaml::from_str("custom: 1\nkeyHash: old\ndescription: text\nactive: true\n")
                .unwrap();
        let patch = json!({"keyHash": "new", "description": null, "scope": "deploy"});

        apply_to_yaml(&mut mapping, patch.as_object().unwrap()).unwrap();

        assert_eq!(
            serde_yaml::to_string(&mapping).unwrap(),
            "custom: 1\nkeyHash: new\nactive: true\nscope: deploy\n"
        );
    }
}
