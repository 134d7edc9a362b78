//! Arguments from JS, taken as `Unknown` and converted here, so a wrong type becomes an
//! `INVALID_ARGUMENT` naming the argument: a rejection of the call's promise rather than a
//! synchronous throw from napi's own conversion.

use std::collections::HashMap;

use napi::{
    bindgen_prelude::{FromNapiValue, Unknown},
    JsValue, ValueType,
};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

fn type_of(v: &Unknown) -> ValueType {
    v.get_type().unwrap_or(ValueType::Unknown)
}

fn is_nullish(v: &Unknown) -> bool {
    matches!(type_of(v), ValueType::Null | ValueType::Undefined)
}

fn described(v: &Unknown) -> &'static str {
    match type_of(v) {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::String => "a string",
        ValueType::Symbol => "a symbol",
        ValueType::Object => "an object",
        ValueType::Function => "a function",
        ValueType::External => "an external",
        ValueType::BigInt => "a bigint",
        _ => "an unknown value",
    }
}

fn wrong(name: &str, want: &str, v: &Unknown) -> Error {
    Error::InvalidArgument(format!("`{name}` must be {want}, not {}", described(v)))
}

pub fn string(name: &str, v: Unknown) -> Result<String> {
    if type_of(&v) != ValueType::String {
        return Err(wrong(name, "a string", &v));
    }
    // SAFETY: the value was just checked to be a JS string.
    unsafe { v.cast::<String>() }.map_err(|e| Error::InvalidArgument(format!("`{name}`: {e}")))
}

/// `null` and `undefined` are `None`.
pub fn opt_string(name: &str, v: Unknown) -> Result<Option<String>> {
    if is_nullish(&v) {
        return Ok(None);
    }
    string(name, v)
        .map(Some)
        .map_err(|_| wrong(name, "a string, null or undefined", &v))
}

/// Any JSON-representable value (not `undefined`, a function or a symbol).
fn json(name: &str, v: Unknown) -> Result<Value> {
    // SAFETY: `v` is a live value of the current call's env.
    unsafe { Value::from_napi_value(v.value().env, v.value().value) }
        .map_err(|e| Error::InvalidArgument(format!("`{name}` is not JSON data: {}", e.reason)))
}

pub fn array(name: &str, v: Unknown) -> Result<Value> {
    if is_nullish(&v) {
        return Err(wrong(name, "an array", &v));
    }
    match json(name, v)? {
        a @ Value::Array(_) => Ok(a),
        _ => Err(wrong(name, "an array", &v)),
    }
}

pub fn opt_array(name: &str, v: Unknown) -> Result<Option<Value>> {
    if is_nullish(&v) {
        return Ok(None);
    }
    array(name, v)
        .map(Some)
        .map_err(|_| wrong(name, "an array, null or undefined", &v))
}

pub fn object(name: &str, v: Unknown) -> Result<Map<String, Value>> {
    if is_nullish(&v) {
        return Err(wrong(name, "an object", &v));
    }
    match json(name, v)? {
        Value::Object(m) => Ok(m),
        _ => Err(wrong(name, "an object", &v)),
    }
}

pub fn opt_object(name: &str, v: Unknown) -> Result<Option<Map<String, Value>>> {
    if is_nullish(&v) {
        return Ok(None);
    }
    object(name, v)
        .map(Some)
        .map_err(|_| wrong(name, "an object, null or undefined", &v))
}

/// Any JSON value, `undefined` read as absent (a request body).
pub fn opt_json(name: &str, v: Unknown) -> Result<Option<Value>> {
    if type_of(&v) == ValueType::Undefined {
        return Ok(None);
    }
    json(name, v).map(Some)
}

/// `Record<string, string>`, or absent.
pub fn headers(name: &str, v: Unknown) -> Result<Option<HashMap<String, String>>> {
    let Some(map) = opt_object(name, v)? else {
        return Ok(None);
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(Error::InvalidArgument(format!(
                "`{name}.{k}` must be a string"
            ))),
        })
        .collect::<Result<_>>()
        .map(Some)
}

/// A `#[napi(object)]` (or absent), through napi's own conversion with the argument's name
/// on its complaint.
pub fn opt_typed<T: FromNapiValue>(name: &str, v: Unknown) -> Result<Option<T>> {
    if is_nullish(&v) {
        return Ok(None);
    }
    if type_of(&v) != ValueType::Object {
        return Err(wrong(name, "an object, null or undefined", &v));
    }
    // SAFETY: `v` is a live object of the current call's env; `T` checks its fields itself.
    unsafe { v.cast::<T>() }
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("`{name}`: {}", e.reason)))
}
