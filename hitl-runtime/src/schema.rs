//! JSON Schema: generating schemas for Rust types and validating values against them.

use std::any::TypeId;
use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use schemars::JsonSchema;
use serde_json::Value;
use serde_json::value::RawValue;

/// The JSON schema of `T`, generated once per type and cached.
pub fn schema_of<T: JsonSchema + 'static>() -> Arc<Value> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let id = TypeId::of::<T>();
    if let Some(s) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        return s.clone();
    }
    let schema = Arc::new(schemars::schema_for!(T).to_value());
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(id)
        .or_insert(schema)
        .clone()
}

type Compiled = Arc<jsonschema::Validator>;

/// A hash of a JSON value's content, computed without allocating.
fn content_hash(value: &Value, h: &mut impl Hasher) {
    match value {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => {
            h.write_u8(1);
            h.write_u8(u8::from(*b));
        }
        Value::Number(n) => {
            h.write_u8(2);
            match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => h.write_i64(i),
                (_, Some(u), _) => h.write_u64(u),
                (_, _, Some(f)) => h.write_u64(f.to_bits()),
                _ => {}
            }
        }
        Value::String(s) => {
            h.write_u8(3);
            h.write(s.as_bytes());
            h.write_u8(0xff);
        }
        Value::Array(a) => {
            h.write_u8(4);
            h.write_usize(a.len());
            for v in a {
                content_hash(v, h);
            }
        }
        Value::Object(o) => {
            h.write_u8(5);
            h.write_usize(o.len());
            for (k, v) in o {
                h.write(k.as_bytes());
                h.write_u8(0xff);
                content_hash(v, h);
            }
        }
    }
}

/// A bounded map from a schema's hash to its compiled validator; the key is kept and
/// compared on lookup, so a hash collision cannot pick the wrong validator.
struct Cache<K> {
    map: Mutex<HashMap<u64, (K, Compiled)>>,
}

impl<K: PartialEq> Cache<K> {
    const MAX: usize = 1024;

    fn new() -> Self {
        Cache {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get_or_compile(
        &self,
        hash: u64,
        matches: impl Fn(&K) -> bool,
        compile: impl FnOnce() -> Result<(K, Compiled), String>,
    ) -> Result<Compiled, String> {
        if let Some((key, v)) = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            && matches(key)
        {
            return Ok(v.clone());
        }
        let (key, validator) = compile()?;
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(hash, (key, validator.clone()));
        Ok(validator)
    }
}

fn compile(schema: &Value) -> Result<Compiled, String> {
    Ok(Arc::new(
        jsonschema::validator_for(schema).map_err(|e| format!("invalid schema: {e}"))?,
    ))
}

/// The compiled validator of a schema given as a value.
fn compiled(schema: &Value) -> Result<Compiled, String> {
    static CACHE: OnceLock<Cache<Value>> = OnceLock::new();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content_hash(schema, &mut hasher);
    CACHE.get_or_init(Cache::new).get_or_compile(
        hasher.finish(),
        |key| key == schema,
        || Ok((schema.clone(), compile(schema)?)),
    )
}

/// The compiled validator of a schema given as JSON text (as stored with an
/// interrupt): looked up by the text, so a stored schema is parsed only once.
fn compiled_raw(schema: &RawValue) -> Result<Compiled, String> {
    static CACHE: OnceLock<Cache<Box<str>>> = OnceLock::new();
    let text = schema.get();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(text.as_bytes());
    CACHE.get_or_init(Cache::new).get_or_compile(
        hasher.finish(),
        |key| **key == *text,
        || {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| format!("the stored schema is not JSON: {e}"))?;
            Ok((text.into(), compile(&value)?))
        },
    )
}

/// [`validate`] with the schema as JSON text.
pub(crate) fn validate_raw(schema: &RawValue, value: &Value) -> Result<(), Vec<String>> {
    problems(&*compiled_raw(schema).map_err(|e| vec![e])?, value)
}

/// Validates `value` against `schema`; every problem is one readable line naming where
/// it is (a JSON pointer into the value).
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    problems(&*compiled(schema).map_err(|e| vec![e])?, value)
}

fn problems(validator: &jsonschema::Validator, value: &Value) -> Result<(), Vec<String>> {
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

/// How deeply JSON may nest anywhere it enters hitl (model output, user input,
/// resumes, `update_state`, tool arguments and results). Well below the 128 levels
/// serde_json decodes, so that whatever is accepted can also be stored (which adds a
/// few levels of wrapping) and read back.
pub const MAX_JSON_DEPTH: usize = 64;

/// How deeply `value` nests: 0 for a scalar, 1 for a flat array or object.
pub fn json_depth(value: &Value) -> usize {
    // Iterative (a value built in code may nest deeper than the stack allows): one
    // iterator per open level, no allocation per container.
    enum Level<'a> {
        Array(std::slice::Iter<'a, Value>),
        Object(serde_json::map::Values<'a>),
    }
    fn level(v: &Value) -> Option<Level<'_>> {
        match v {
            Value::Array(a) => Some(Level::Array(a.iter())),
            Value::Object(o) => Some(Level::Object(o.values())),
            _ => None,
        }
    }
    let Some(first) = level(value) else {
        return 0;
    };
    let mut stack = vec![first];
    let mut deepest = 1;
    while let Some(top) = stack.last_mut() {
        let next = match top {
            Level::Array(i) => i.next(),
            Level::Object(i) => i.next(),
        };
        match next {
            None => {
                stack.pop();
            }
            Some(child) => {
                if let Some(l) = level(child) {
                    stack.push(l);
                    deepest = deepest.max(stack.len());
                }
            }
        }
    }
    deepest
}

/// Whether `value` nests deeper than `limit` ([`json_depth`] > `limit`), without
/// allocating: it recurses at most `limit + 1` levels and stops at the first level
/// too deep.
pub(crate) fn nests_deeper_than(value: &Value, limit: usize) -> bool {
    match value {
        Value::Array(a) => limit == 0 || a.iter().any(|v| nests_deeper_than(v, limit - 1)),
        Value::Object(o) => limit == 0 || o.values().any(|v| nests_deeper_than(v, limit - 1)),
        _ => false,
    }
}

/// Whether `value` nests deeper than [`MAX_JSON_DEPTH`].
pub(crate) fn too_deep(value: &Value) -> bool {
    nests_deeper_than(value, MAX_JSON_DEPTH)
}

/// How deeply a JSON text nests (a scan of its brackets outside strings; the text is
/// valid JSON).
pub(crate) fn raw_depth(json: &str) -> usize {
    let bytes = json.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string's body: jump to each `"` or `\`; an escape skips the
                // byte after it.
                i += 1;
                while let Some(found) = bytes
                    .get(i..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                {
                    i += found;
                    if bytes[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// Fails when `value` nests deeper than [`MAX_JSON_DEPTH`], saying so.
pub(crate) fn check_depth(value: &Value) -> Result<(), String> {
    if too_deep(value) {
        let depth = json_depth(value);
        return Err(format!(
            "the value nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn depth_of_values_and_texts_agree() {
        for text in [
            r#"1"#,
            r#"[]"#,
            r#"{"a":[1,{"b":"]]]"}]}"#,
            r#"["\"[", [[]]]"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(raw_depth(text), json_depth(&value), "{text}");
        }
    }

    #[test]
    fn nests_deeper_than_agrees_with_the_depth() {
        let mut values = vec![json!(1), json!([]), json!({}), json!([1, {"a": [[], {}]}])];
        let mut deep = json!("x");
        for i in 0..70 {
            deep = if i % 2 == 0 {
                json!([deep])
            } else {
                json!({ "k": deep })
            };
            values.push(deep.clone());
        }
        values.push(json!([1, [2, [3, [4]]], {"a": {"b": {"c": {"d": {}}}}}]));
        for value in &values {
            let depth = json_depth(value);
            for limit in 0..=70 {
                assert_eq!(
                    nests_deeper_than(value, limit),
                    depth > limit,
                    "{value} {limit}"
                );
            }
            assert_eq!(check_depth(value).is_err(), depth > MAX_JSON_DEPTH);
        }
        // A value built in code may nest far deeper than the stack allows.
        let mut very_deep = json!(null);
        for _ in 0..100_000 {
            very_deep = Value::Array(vec![very_deep]);
        }
        assert!(too_deep(&very_deep));
        assert_eq!(json_depth(&very_deep), 100_000);
        // serde_json drops values recursively; take it apart level by level.
        while let Value::Array(mut a) = very_deep {
            very_deep = a.pop().unwrap_or_default();
        }
    }

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
