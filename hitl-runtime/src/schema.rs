//! JSON Schema: generating schemas for Rust types and validating values against them.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use schemars::JsonSchema;
use serde_json::Value;

/// The JSON schema of `T`, generated once per type and cached.
pub fn schema_of<T: JsonSchema + 'static>() -> Arc<Value> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let id = TypeId::of::<T>();
    if let Some(s) = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id)
    {
        return s.clone();
    }
    let schema = Arc::new(schemars::schema_for!(T).to_value());
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(id)
        .or_insert(schema)
        .clone()
}

type Compiled = Arc<jsonschema::Validator>;

/// Compiled validators, keyed by the schema's JSON text.
fn compiled(schema: &Value) -> Result<Compiled, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    const MAX: usize = 1024;
    let cache = CACHE.get_or_init(Default::default);
    let key = schema.to_string();
    if let Some(v) = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&key)
    {
        return Ok(v.clone());
    }
    let validator =
        Arc::new(jsonschema::validator_for(schema).map_err(|e| format!("invalid schema: {e}"))?);
    let mut guard = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if guard.len() >= MAX {
        guard.clear();
    }
    guard.insert(key, validator.clone());
    Ok(validator)
}

/// Validates `value` against `schema`; every problem is one readable line naming where
/// it is (a JSON pointer into the value).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let validator = compiled(schema).map_err(|e| vec![e])?;
    let problems: Vec<String> = validator
        .iter_errors(value)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("at `{path}`: {e}")
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Answer {
        approved: bool,
    }

    #[test]
    fn schema_of_is_cached_and_validates() {
        let a = schema_of::<Answer>();
        let b = schema_of::<Answer>();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(validate(&a, &json!({"approved": true})).is_ok());
        let problems = validate(&a, &json!({"approved": "yes"})).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("at `/approved`:"), "{problems:?}");
    }
}
