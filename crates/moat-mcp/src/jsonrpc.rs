//! JSON-RPC 2.0 messages as the gateway sees them.
//!
//! The gateway must not freeze the protocol: unknown methods, unknown fields
//! and `_meta` pass through intact. A [`Message`] therefore keeps `params`,
//! `result` and every unknown top-level member as raw JSON values, and only
//! the envelope (`jsonrpc`, `id`, `method`, `error`) is typed.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Standard JSON-RPC and MCP error codes.
pub mod code {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters (unknown tool, bad cursor, …).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined: an upstream failed, timed out or is unavailable.
    pub const UPSTREAM_ERROR: i64 = -32001;
    /// Implementation-defined: the caller is not allowed to do this.
    pub const FORBIDDEN: i64 = -32003;
    /// Implementation-defined (2025-11-25 SDK convention): no valid session.
    pub const SESSION_ERROR: i64 = -32000;
    /// MCP 2026-07-28: HTTP headers do not match the body, or are missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28: a required client capability was not declared.
    pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
    /// MCP 2026-07-28: unsupported protocol version.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// A JSON-RPC request id: a string or a number (kept as JSON to round-trip
/// exactly, e.g. `1` stays `1` and `"1"` stays `"1"`).
pub type Id = Value;

/// The error member of an error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// Error code.
    pub code: i64,
    /// One sentence, safe to show a person.
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }
    /// Attaches structured data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// Any JSON-RPC message: request, notification or response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Present on requests and responses (`Some(Null)` when the member is
    /// `null`, which only an error response may carry).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Present on requests and notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request or notification parameters, untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// A successful response's result, untouched (even `null`).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// A successful response's result serialised in advance, written as
    /// `result` as it is. Only the gateway's own answers carry one (never a
    /// parsed message): a large result built once and served many times,
    /// such as an aggregated list, is not copied into a `Value` per answer.
    #[serde(rename(serialize = "result"), skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub raw_result: Option<RawResult>,
    /// An error response's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
    /// Unknown top-level members, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A JSON value already serialised (see [`Message::raw_result`]).
#[derive(Clone, Debug)]
pub struct RawResult(Box<RawValue>);

impl RawResult {
    /// Wraps serialised JSON.
    pub fn new(raw: Box<RawValue>) -> Self {
        Self(raw)
    }
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawResult {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A member that is present, even as `null`, is `Some`: serde's default
/// would read `"id": null` as an absent id and turn a request into a
/// notification.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What a message is, by its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Has `id` and `method`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` (possibly null) and exactly one of `result`/`error`.
    Response,
}

/// Why a parsed JSON value is not a JSON-RPC message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    /// Not JSON at all.
    #[error("the body is not valid JSON")]
    Parse,
    /// JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Invalid(&'static str),
}

impl ShapeError {
    /// The JSON-RPC error code for this failure.
    pub fn code(&self) -> i64 {
        match self {
            Self::Parse => code::PARSE_ERROR,
            Self::Invalid(_) => code::INVALID_REQUEST,
        }
    }
}

impl Message {
    /// Parses and validates one message from bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ShapeError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|_| ShapeError::Parse)?;
        Self::from_value(value)
    }

    /// Validates a JSON value as one message.
    pub fn from_value(value: Value) -> Result<Self, ShapeError> {
        if !value.is_object() {
            return Err(ShapeError::Invalid("expected a JSON object"));
        }
        let msg: Message =
            serde_json::from_value(value).map_err(|_| ShapeError::Invalid("a member has the wrong type"))?;
        msg.validate()?;
        Ok(msg)
    }

    fn validate(&self) -> Result<(), ShapeError> {
        if self.jsonrpc != "2.0" {
            return Err(ShapeError::Invalid("`jsonrpc` must be \"2.0\""));
        }
        if let Some(id) = &self.id
            && !(id.is_string() || id.is_number() || (id.is_null() && self.method.is_none()))
        {
            return Err(ShapeError::Invalid("`id` must be a string or a number"));
        }
        match (&self.method, &self.result, &self.error) {
            (Some(m), None, None) if !m.is_empty() => {}
            (Some(_), _, _) => {
                return Err(ShapeError::Invalid("a request carries `method` and no `result` or `error`"));
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                if self.id.is_none() {
                    return Err(ShapeError::Invalid("a response needs an `id`"));
                }
            }
            _ => return Err(ShapeError::Invalid("missing `method`, or both `result` and `error`")),
        }
        if let Some(p) = &self.params
            && !(p.is_object() || p.is_array())
        {
            return Err(ShapeError::Invalid("`params` must be an object or an array"));
        }
        Ok(())
    }

    /// The message's kind. Only meaningful on a validated message.
    pub fn kind(&self) -> Kind {
        match (&self.method, &self.id) {
            (Some(_), Some(_)) => Kind::Request,
            (Some(_), None) => Kind::Notification,
            (None, _) => Kind::Response,
        }
    }

    /// A request.
    pub fn request(id: Id, method: impl Into<String>, params: Option<Value>) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: Some(id),
            method: Some(method.into()),
            params,
            result: None,
            raw_result: None,
            error: None,
            extra: Map::new(),
        }
    }

    /// A notification.
    pub fn notification(method: impl Into<String>, params: Option<Value>) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: None,
            method: Some(method.into()),
            params,
            result: None,
            raw_result: None,
            error: None,
            extra: Map::new(),
        }
    }

    /// A successful response.
    pub fn response(id: Id, result: Value) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: Some(id),
            method: None,
            params: None,
            result: Some(result),
            raw_result: None,
            error: None,
            extra: Map::new(),
        }
    }

    /// A successful response whose result is already serialised.
    pub fn raw_response(id: Id, result: RawResult) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: Some(id),
            method: None,
            params: None,
            result: None,
            raw_result: Some(result),
            error: None,
            extra: Map::new(),
        }
    }

    /// An error response. `id` is `None` when the request's id could not be
    /// read (it then serialises as `"id": null`).
    pub fn error_response(id: Option<Id>, error: ErrorObject) -> Self {
        Self {
            jsonrpc: "2.0".into(),
            id: Some(id.unwrap_or(Value::Null)),
            method: None,
            params: None,
            result: None,
            raw_result: None,
            error: Some(error),
            extra: Map::new(),
        }
    }

    /// The method, or `""` for a response.
    pub fn method_str(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// `params._meta`, if present.
    pub fn meta(&self) -> Option<&Map<String, Value>> {
        self.params.as_ref()?.get("_meta")?.as_object()
    }

    /// A string member of `params`.
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params.as_ref()?.get(key)?.as_str()
    }

    /// Serialises to compact JSON bytes. Serialising a `Message` cannot fail
    /// (all members are JSON values), so this never panics.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_raw_result_is_written_as_it_is_and_reads_back_as_a_result() {
        let raw = RawValue::from_string(r#"{"tools":[{"name":"a__b","n":1.50}]}"#.to_owned()).unwrap();
        let m = Message::raw_response(json!(7), RawResult::new(raw));
        let bytes = m.to_bytes();
        assert_eq!(bytes, br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"a__b","n":1.50}]}}"#);
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back.kind(), Kind::Response);
        assert_eq!(back.result, Some(json!({"tools":[{"name":"a__b","n":1.5}]})));
        assert_eq!(back.raw_result, None);
    }

    #[test]
    fn classifies_messages() {
        let r = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert_eq!(r.kind(), Kind::Request);
        let n = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(n.kind(), Kind::Notification);
        let s = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(s.kind(), Kind::Response);
    }

    #[test]
    fn rejects_bad_shapes_with_the_right_code() {
        assert_eq!(Message::parse(b"{not json").unwrap_err().code(), code::PARSE_ERROR);
        for bad in [
            &br#"[]"#[..],
            br#"42"#,
            br#"{"id":1,"method":"x"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
            br#"{"jsonrpc":"2.0","method":""}"#,
        ] {
            assert_eq!(
                Message::parse(bad).unwrap_err().code(),
                code::INVALID_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unknown_members_round_trip() {
        let raw = json!({"jsonrpc":"2.0","id":7,"method":"future/thing",
            "params":{"_meta":{"x.y/z":1},"new":[1,2]},"extension":{"a":true}});
        let m = Message::from_value(raw.clone()).unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap(), raw);
    }

    #[test]
    fn error_response_without_id_serialises_null_id() {
        let m = Message::error_response(None, ErrorObject::new(code::PARSE_ERROR, "bad"));
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], -32700);
    }

    /// A JSON-RPC error response whose id could not be read carries
    /// `"id": null` (JSON-RPC 2.0 §5), and moat itself emits one
    /// ([`Message::error_response`] with `None`); a request with `"id": null`
    /// is not a notification. `#[serde(default)]` on `Option<Id>` turns a
    /// present `null` into `None`, so `validate` never sees it.
    #[test]
    fn null_ids_keep_their_meaning() {
        let own = Message::error_response(None, ErrorObject::new(code::PARSE_ERROR, "bad")).to_bytes();
        let parsed = Message::parse(&own).expect("moat's own error response parses");
        assert_eq!(parsed.kind(), Kind::Response);
        assert_eq!(serde_json::to_value(&parsed).unwrap()["id"], Value::Null);
        let req = br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{}}"#;
        assert_eq!(Message::parse(req).map_err(|e| e.code()), Err(code::INVALID_REQUEST));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            // No regression files written into the source tree.
            ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("jsonrpc".to_owned()),
                Just("id".to_owned()),
                Just("method".to_owned()),
                Just("params".to_owned()),
                Just("result".to_owned()),
                Just("error".to_owned()),
                Just("_meta".to_owned()),
                "\\PC{0,8}",
            ]
        }

        fn number() -> impl Strategy<Value = Value> {
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            ]
        }

        /// Any JSON value, biased towards the members a message has.
        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                number(),
                Just(Value::String("2.0".into())),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        /// JSON without nulls (a present `null` member is read as absent).
        fn json_no_null() -> impl Strategy<Value = Value> {
            let leaf =
                prop_oneof![any::<bool>().prop_map(Value::Bool), number(), any::<String>().prop_map(Value::String)];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec(("\\PC{0,6}", inner), 0..4)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        fn id() -> impl Strategy<Value = Value> {
            prop_oneof![number(), any::<String>().prop_map(Value::String)]
        }

        /// Unknown top-level members (not one of the envelope's).
        fn extras() -> impl Strategy<Value = Map<String, Value>> {
            prop::collection::vec(("[a-zA-Z_./]{1,10}", json_no_null()), 0..3).prop_map(|kv| {
                kv.into_iter()
                    .filter(|(k, _)| !["jsonrpc", "id", "method", "params", "result", "error"].contains(&k.as_str()))
                    .collect()
            })
        }

        fn params() -> impl Strategy<Value = Option<Value>> {
            let object = prop::collection::vec(("\\PC{0,8}", json_no_null()), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect()));
            let array = prop::collection::vec(json_no_null(), 0..4).prop_map(Value::Array);
            prop::option::of(prop_oneof![object, array])
        }

        /// Well-formed messages of every kind, as JSON values.
        fn message() -> impl Strategy<Value = Value> {
            let method = "\\PC{1,20}";
            let request = (id(), method, params(), extras()).prop_map(|(id, m, p, x)| {
                let mut o = x;
                o.insert("jsonrpc".into(), "2.0".into());
                o.insert("id".into(), id);
                o.insert("method".into(), Value::String(m));
                if let Some(p) = p {
                    o.insert("params".into(), p);
                }
                Value::Object(o)
            });
            let notification = (method, params(), extras()).prop_map(|(m, p, x)| {
                let mut o = x;
                o.insert("jsonrpc".into(), "2.0".into());
                o.insert("method".into(), Value::String(m));
                if let Some(p) = p {
                    o.insert("params".into(), p);
                }
                Value::Object(o)
            });
            let success = (id(), json_no_null(), extras()).prop_map(|(id, r, x)| {
                let mut o = x;
                o.insert("jsonrpc".into(), "2.0".into());
                o.insert("id".into(), id);
                o.insert("result".into(), r);
                Value::Object(o)
            });
            let error = (id(), any::<i64>(), any::<String>(), prop::option::of(json_no_null()), extras()).prop_map(
                |(id, code, message, data, x)| {
                    let mut o = x;
                    o.insert("jsonrpc".into(), "2.0".into());
                    o.insert("id".into(), id);
                    let mut e = serde_json::json!({ "code": code, "message": message });
                    if let Some(d) = data {
                        e["data"] = d;
                    }
                    o.insert("error".into(), e);
                    Value::Object(o)
                },
            );
            prop_oneof![request, notification, success, error]
        }

        /// What a parsed message serialises to: the input, less the members
        /// that `serde(default)` reads a `null` as absent from. `id` and
        /// `result` are read with `present`, so their `null` is kept.
        fn without_null_members(v: &Value) -> Value {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.retain(|k, x| !(x.is_null() && ["method", "params", "error"].contains(&k.as_str())));
                if let Some(Value::Object(e)) = o.get_mut("error")
                    && e.get("data").is_some_and(Value::is_null)
                {
                    e.remove("data");
                }
            }
            v
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let r = Message::parse(&bytes);
                let is_json = serde_json::from_slice::<Value>(&bytes).is_ok();
                match r {
                    Ok(_) => prop_assert!(is_json),
                    Err(e) if is_json => prop_assert_eq!(e.code(), code::INVALID_REQUEST),
                    Err(e) => prop_assert_eq!(e.code(), code::PARSE_ERROR),
                }
            }

            #[test]
            fn non_json_text_is_a_parse_error(prefix in prop::collection::vec(any::<u8>(), 0..64), v in json()) {
                // Valid JSON followed by garbage, or garbage in front, is not JSON.
                let mut bytes = serde_json::to_vec(&v).unwrap();
                bytes.extend_from_slice(b" }x");
                prop_assert_eq!(Message::parse(&bytes).unwrap_err().code(), code::PARSE_ERROR);
                let mut front = prefix;
                front.push(b'}');
                front.extend_from_slice(&serde_json::to_vec(&v).unwrap());
                if serde_json::from_slice::<Value>(&front).is_err() {
                    prop_assert_eq!(Message::parse(&front).unwrap_err().code(), code::PARSE_ERROR);
                }
            }

            #[test]
            fn any_json_value_is_a_message_or_invalid_request(v in prop_oneof![json(), message()]) {
                let from_value = Message::from_value(v.clone());
                let from_bytes = Message::parse(&serde_json::to_vec(&v).unwrap());
                prop_assert_eq!(from_value.is_ok(), from_bytes.is_ok());
                match from_value {
                    Err(e) => {
                        prop_assert_eq!(e.code(), code::INVALID_REQUEST);
                        prop_assert_eq!(from_bytes.unwrap_err().code(), code::INVALID_REQUEST);
                    }
                    Ok(m) => {
                        prop_assert!(v.is_object());
                        // Re-serialising keeps every member (nulls aside) ...
                        let out = serde_json::to_value(&m).unwrap();
                        prop_assert_eq!(&out, &without_null_members(&v));
                        // ... and is itself the same message.
                        prop_assert_eq!(Message::from_value(out).unwrap(), m);
                    }
                }
                if !v.is_object() {
                    prop_assert_eq!(Message::from_value(v).unwrap_err().code(), code::INVALID_REQUEST);
                }
            }

            #[test]
            fn well_formed_messages_round_trip(v in message()) {
                let m = Message::from_value(v.clone());
                prop_assert!(m.is_ok(), "refused {}: {:?}", v, m);
                let m = m.unwrap();
                let expected = match (v.get("method").is_some(), v.get("id").is_some()) {
                    (true, true) => Kind::Request,
                    (true, false) => Kind::Notification,
                    (false, _) => Kind::Response,
                };
                prop_assert_eq!(m.kind(), expected);
                prop_assert_eq!(serde_json::to_value(&m).unwrap(), v.clone());
                // Through bytes too, where no float is involved (see
                // `floats_survive_a_hop`).
                if !has_float(&v) {
                    prop_assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
                }
            }
        }

        fn has_float(v: &Value) -> bool {
            match v {
                Value::Number(n) => n.is_f64(),
                Value::Array(a) => a.iter().any(has_float),
                Value::Object(o) => o.values().any(has_float),
                _ => false,
            }
        }

        proptest! {
            #![proptest_config(config())]

            /// The gateway parses and re-serialises every message it relays;
            /// without serde_json's `float_roundtrip` feature, parsing text is
            /// not exact, so a float in a tool result can change its last
            /// digit at each hop (e.g. `-9.222286681388908e106` becomes
            /// `-9.222286681388911e106`).
            #[test]
            fn floats_survive_a_hop(v in message()) {
                let m = Message::from_value(v).unwrap();
                prop_assert_eq!(Message::parse(&m.to_bytes()).unwrap(), m);
            }
        }
    }
}
