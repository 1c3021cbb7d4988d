//! The per-hop rules: which `_meta` keys an upstream sees, which HTTP
//! headers mirror the body, and how an answer to `server/discover` or
//! `initialize` decides the upstream's era.

use serde_json::{Map, Value, json};

use crate::jsonrpc::{Message, code};
use crate::protocol;

/// The protocol era an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25 and earlier: `initialize`, sessions.
    Legacy,
    /// 2026-07-28: stateless, `_meta` on every request.
    Modern,
}

/// What an upstream said about itself (from `initialize` or
/// `server/discover`).
#[derive(Clone, Debug, PartialEq)]
pub struct ServerHello {
    /// The era in use.
    pub era: Era,
    /// The protocol version in use.
    pub protocol_version: String,
    /// The server's capabilities, as sent.
    pub capabilities: Value,
    /// The server's `serverInfo` (`{}` when it sent none).
    pub server_info: Value,
    /// The server's instructions, if any.
    pub instructions: Option<String>,
}

/// The verdict of an era probe.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Probe {
    /// A modern server; the hello comes from its `DiscoverResult`.
    Modern(ServerHello),
    /// Not positive evidence of a modern server: use `initialize`.
    Legacy(String),
    /// A modern-only server that shares no version with moat.
    Incompatible(String),
}

/// The progress token moat uses upstream for its call `id`.
pub(crate) fn upstream_progress_token(id: u64) -> String {
    format!("moat-{id}")
}

/// Rewrites `params` for the upstream.
///
/// - The hop keys ([`protocol::HOP_META_KEYS`]) the downstream client sent
///   are removed; a modern upstream gets moat's own instead (with the
///   downstream client's capabilities when given).
/// - A `_meta.progressToken` (string or number) is replaced by `token`, and
///   the original is returned so that progress can be routed back.
/// - An empty `_meta` is dropped. Array params are left alone.
pub(crate) fn prepare_params(
    params: Option<Value>,
    era: Era,
    client_capabilities: Option<&Value>,
    client_info: &Value,
    token: Option<&str>,
) -> (Option<Value>, Option<Value>) {
    let mut obj = match params {
        None => Map::new(),
        Some(Value::Object(o)) => o,
        Some(other) => return (Some(other), None),
    };
    let mut meta = match obj.remove("_meta") {
        Some(Value::Object(m)) => m,
        Some(other) => {
            // Not ours to interpret: pass it through untouched.
            obj.insert("_meta".into(), other);
            Map::new()
        }
        None => Map::new(),
    };
    for key in protocol::HOP_META_KEYS {
        meta.remove(*key);
    }
    let mut original = None;
    if let Some(token) = token
        && let Some(t) = meta.get("progressToken")
        && (t.is_string() || t.is_number())
    {
        original = meta.insert("progressToken".into(), Value::String(token.to_owned()));
    }
    if era == Era::Modern {
        meta.insert(protocol::META_PROTOCOL_VERSION.into(), json!(protocol::MODERN));
        meta.insert(
            protocol::META_CLIENT_CAPABILITIES.into(),
            client_capabilities.cloned().unwrap_or_else(|| json!({})),
        );
        meta.insert(protocol::META_CLIENT_INFO.into(), client_info.clone());
    }
    if !meta.is_empty() {
        obj.insert("_meta".into(), Value::Object(meta));
    }
    if obj.is_empty() { (None, original) } else { (Some(Value::Object(obj)), original) }
}

/// The params of moat's `server/discover` probe.
pub(crate) fn discover_params(client_info: &Value) -> Value {
    json!({"_meta": {
        protocol::META_PROTOCOL_VERSION: protocol::MODERN,
        protocol::META_CLIENT_CAPABILITIES: {},
        protocol::META_CLIENT_INFO: client_info,
    }})
}

/// `data.supported` of an `UnsupportedProtocolVersionError`.
pub(crate) fn supported_versions(data: Option<&Value>) -> Option<Vec<String>> {
    let list = data?.get("supported")?.as_array()?;
    Some(list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
}

/// True for the JSON-RPC errors only a modern server sends.
pub(crate) fn is_modern_error(code: i64) -> bool {
    matches!(code, code::HEADER_MISMATCH | code::MISSING_CLIENT_CAPABILITY | code::UNSUPPORTED_PROTOCOL_VERSION)
}

/// Classifies the answer to `server/discover`. Anything that is not positive
/// evidence of a modern server means legacy; only a modern-only server with
/// no version in common is incompatible.
pub(crate) fn classify_discover(resp: &Message) -> Probe {
    if let Some(err) = &resp.error {
        if err.code == code::UNSUPPORTED_PROTOCOL_VERSION
            && let Some(supported) = supported_versions(err.data.as_ref())
            && !supported.is_empty()
            && !supported.iter().any(|v| protocol::LEGACY_VERSIONS.contains(&v.as_str()))
        {
            return Probe::Incompatible(format!(
                "supports only protocol versions moat does not speak ({})",
                supported.join(", ")
            ));
        }
        return Probe::Legacy(format!("server/discover answered error {}", err.code));
    }
    let Some(result) = resp.result.as_ref().filter(|r| r.is_object()) else {
        return Probe::Legacy("server/discover answered no result object".into());
    };
    let modern = result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v.as_str() == Some(protocol::MODERN)));
    if !modern {
        return Probe::Legacy(format!("server/discover does not list {}", protocol::MODERN));
    }
    let server_info = result
        .get("_meta")
        .and_then(|m| m.get(protocol::META_SERVER_INFO))
        .or_else(|| result.get("serverInfo"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    Probe::Modern(ServerHello {
        era: Era::Modern,
        protocol_version: protocol::MODERN.into(),
        capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        server_info,
        instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
    })
}

/// Reads an `InitializeResult`; the negotiated version must be one moat
/// speaks.
pub(crate) fn hello_from_initialize(result: &Value) -> Result<ServerHello, String> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or("answered initialize without a protocol version")?;
    if !protocol::LEGACY_VERSIONS.contains(&version) {
        return Err(format!("negotiated protocol version {version:?}, which moat does not speak"));
    }
    Ok(ServerHello {
        era: Era::Legacy,
        protocol_version: version.to_owned(),
        capabilities: result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
        server_info: result.get("serverInfo").cloned().unwrap_or_else(|| json!({})),
        instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
    })
}

/// The HTTP headers that mirror a message for a modern upstream:
/// `MCP-Protocol-Version`, `Mcp-Method` and, for `tools/call`,
/// `prompts/get` and `resources/read`, `Mcp-Name` (base64 sentinel when the
/// value is not plain ASCII). `Err` names what cannot be carried.
pub(crate) fn modern_headers(msg: &Message) -> Result<http::HeaderMap, &'static str> {
    let mut h = http::HeaderMap::new();
    h.insert(protocol::HEADER_PROTOCOL_VERSION, http::HeaderValue::from_static(protocol::MODERN));
    if let Some(method) = &msg.method {
        let v = http::HeaderValue::from_str(method).map_err(|_| "the method name cannot be sent in a header")?;
        h.insert(protocol::HEADER_METHOD, v);
        if let Some(field) = protocol::name_field(method)
            && let Some(name) = msg.param_str(field)
        {
            let v = http::HeaderValue::from_str(&protocol::encode_header_value(name))
                .map_err(|_| "the name cannot be sent in a header")?;
            h.insert(protocol::HEADER_NAME, v);
        }
    }
    Ok(h)
}

/// The headers a legacy session adds to every request after `initialize`.
pub(crate) fn legacy_headers(version: &str, session: Option<&http::HeaderValue>) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(version) {
        h.insert(protocol::HEADER_PROTOCOL_VERSION, v);
    }
    if let Some(s) = session {
        h.insert(protocol::HEADER_SESSION_ID, s.clone());
    }
    h
}

/// The schema annotation that mirrors a tool argument into a header.
pub(crate) const X_MCP_HEADER: &str = "x-mcp-header";

/// One valid `x-mcp-header` annotation of a tool's `inputSchema`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamHeader {
    /// The header is `Mcp-Param-{token}`.
    pub token: String,
    /// The chain of `properties` keys from the schema root.
    pub path: Vec<String>,
}

impl ParamHeader {
    /// The argument this annotation mirrors, rendered as its header value
    /// would be (before encoding); `None` when absent or `null`.
    pub fn rendered(&self, arguments: Option<&Value>) -> Option<String> {
        let mut node = arguments;
        for key in &self.path {
            node = node.and_then(|n| n.get(key));
        }
        match node {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The `x-mcp-header` annotations of `input_schema` (2026-07-28, tools):
/// each must sit on a property reachable from the root through `properties`
/// keys only, name an RFC 9110 token unique without regard to case, and
/// annotate an integer, string or boolean. `Err` says why the tool is
/// invalid.
pub fn param_headers(input_schema: &Value) -> Result<Vec<ParamHeader>, String> {
    let mut found = Vec::new();
    walk_schema(input_schema, Some(Vec::new()), &mut found, 0)?;
    let mut seen = std::collections::HashSet::new();
    for h in &found {
        if !seen.insert(h.token.to_ascii_lowercase()) {
            return Err(format!("{X_MCP_HEADER} {:?} is used twice", h.token));
        }
    }
    Ok(found)
}

fn walk_schema(
    schema: &Value,
    path: Option<Vec<String>>,
    found: &mut Vec<ParamHeader>,
    depth: usize,
) -> Result<(), String> {
    // Deeply nested schemas are not a reason to recurse without bound.
    if depth > 64 {
        return Err("the input schema is nested too deeply".into());
    }
    let Some(obj) = schema.as_object() else {
        return Ok(());
    };
    if let Some(token) = obj.get(X_MCP_HEADER) {
        let Some(path) = path.as_ref().filter(|p| !p.is_empty()) else {
            return Err(format!("{X_MCP_HEADER} on a property not reachable through `properties` alone"));
        };
        let token = token
            .as_str()
            .filter(|t| !t.is_empty() && t.bytes().all(is_tchar))
            .ok_or_else(|| format!("{X_MCP_HEADER} on {:?} is not a header token", path.join(".")))?;
        if !matches!(obj.get("type").and_then(Value::as_str), Some("integer" | "string" | "boolean")) {
            return Err(format!("{X_MCP_HEADER} on {:?}, which is not an integer, string or boolean", path.join(".")));
        }
        found.push(ParamHeader { token: token.to_owned(), path: path.clone() });
    }
    for (key, value) in obj {
        match key.as_str() {
            "properties" => {
                if let Some(props) = value.as_object() {
                    for (name, sub) in props {
                        let sub_path = path.as_ref().map(|p| {
                            let mut p = p.clone();
                            p.push(name.clone());
                            p
                        });
                        walk_schema(sub, sub_path, found, depth + 1)?;
                    }
                }
            }
            "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Some(map) = value.as_object() {
                    for sub in map.values() {
                        walk_schema(sub, None, found, depth + 1)?;
                    }
                }
            }
            "items" | "prefixItems" | "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(subs) => {
                    for sub in subs {
                        walk_schema(sub, None, found, depth + 1)?;
                    }
                }
                sub => walk_schema(sub, None, found, depth + 1)?,
            },
            "additionalProperties"
            | "contains"
            | "not"
            | "if"
            | "then"
            | "else"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties" => walk_schema(value, None, found, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `Mcp-Param-*` headers for a `tools/call` with `arguments`. Absent and
/// `null` values are omitted; values are base64-wrapped when not plain.
pub(crate) fn param_header_values(annotations: &[ParamHeader], arguments: Option<&Value>) -> http::HeaderMap {
    let mut out = http::HeaderMap::new();
    for a in annotations {
        let Some(rendered) = a.rendered(arguments) else { continue };
        let name = format!("{}{}", protocol::HEADER_PARAM_PREFIX, a.token.to_ascii_lowercase());
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&protocol::encode_header_value(&rendered)),
        ) {
            out.insert(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "moat";

    fn info() -> Value {
        json!({"name": CLIENT, "version": "1"})
    }

    #[test]
    fn legacy_upstreams_lose_hop_keys_and_empty_meta() {
        let params = json!({"name":"t","_meta":{
            "io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientCapabilities":{"x":{}},
            "io.modelcontextprotocol/clientInfo":{"name":"c"},
            "io.modelcontextprotocol/logLevel":"debug"}});
        let (p, tok) = prepare_params(Some(params), Era::Legacy, None, &info(), Some("moat-1"));
        assert_eq!(p, Some(json!({"name":"t"})));
        assert_eq!(tok, None);
        let (p, _) = prepare_params(None, Era::Legacy, None, &info(), None);
        assert_eq!(p, None);
        let (p, _) =
            prepare_params(Some(json!({"_meta":{"vendor.example/trace":"abc"}})), Era::Legacy, None, &info(), None);
        assert_eq!(p, Some(json!({"_meta":{"vendor.example/trace":"abc"}})));
    }

    #[test]
    fn modern_upstreams_get_moats_hop_keys() {
        let caps = json!({"sampling":{}});
        let params = json!({"name":"t","_meta":{"io.modelcontextprotocol/clientInfo":{"name":"evil"}}});
        let (p, _) = prepare_params(Some(params), Era::Modern, Some(&caps), &info(), None);
        assert_eq!(
            p,
            Some(json!({"name":"t","_meta":{
                "io.modelcontextprotocol/protocolVersion":"2026-07-28",
                "io.modelcontextprotocol/clientCapabilities":{"sampling":{}},
                "io.modelcontextprotocol/clientInfo":{"name":CLIENT,"version":"1"}}}))
        );
        let (p, _) = prepare_params(None, Era::Modern, None, &info(), None);
        assert_eq!(p.unwrap()["_meta"]["io.modelcontextprotocol/clientCapabilities"], json!({}));
    }

    #[test]
    fn progress_tokens_are_replaced_and_returned() {
        let params = json!({"_meta":{"progressToken":"client-tok"},"name":"x"});
        let (p, orig) = prepare_params(Some(params), Era::Legacy, None, &info(), Some("moat-9"));
        assert_eq!(orig, Some(json!("client-tok")));
        assert_eq!(p.unwrap()["_meta"]["progressToken"], json!("moat-9"));
        let (_, orig) =
            prepare_params(Some(json!({"_meta":{"progressToken":7}})), Era::Legacy, None, &info(), Some("moat-9"));
        assert_eq!(orig, Some(json!(7)));
        // A token of the wrong type is not a token: left alone.
        let (p, orig) =
            prepare_params(Some(json!({"_meta":{"progressToken":{}}})), Era::Legacy, None, &info(), Some("moat-9"));
        assert_eq!((p.unwrap()["_meta"]["progressToken"].clone(), orig), (json!({}), None));
        assert_eq!(upstream_progress_token(9), "moat-9");
    }

    #[test]
    fn array_params_and_odd_meta_pass_through() {
        let (p, _) = prepare_params(Some(json!([1, 2])), Era::Modern, None, &info(), None);
        assert_eq!(p, Some(json!([1, 2])));
        let (p, _) = prepare_params(Some(json!({"_meta": 5})), Era::Legacy, None, &info(), None);
        assert_eq!(p, Some(json!({"_meta": 5})));
    }

    fn msg(v: Value) -> Message {
        Message::from_value(v).unwrap()
    }

    #[test]
    fn discover_answers_decide_the_era() {
        let modern = msg(json!({"jsonrpc":"2.0","id":1,"result":{
            "supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"instructions":"hi",
            "_meta":{"io.modelcontextprotocol/serverInfo":{"name":"s","version":"1"}}}}));
        match classify_discover(&modern) {
            Probe::Modern(h) => {
                assert_eq!(h.era, Era::Modern);
                assert_eq!(h.server_info["name"], "s");
                assert_eq!(h.capabilities, json!({"tools":{}}));
                assert_eq!(h.instructions.as_deref(), Some("hi"));
            }
            other => panic!("{other:?}"),
        }
        let not_found = msg(json!({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}));
        assert!(matches!(classify_discover(&not_found), Probe::Legacy(_)));
        let only_legacy =
            msg(json!({"jsonrpc":"2.0","id":1,"result":{"supportedVersions":["2025-11-25"],"capabilities":{}}}));
        assert!(matches!(classify_discover(&only_legacy), Probe::Legacy(_)));
        let disjoint = msg(json!({"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"m",
            "data":{"supported":["2027-01-01"],"requested":"2026-07-28"}}}));
        assert!(matches!(classify_discover(&disjoint), Probe::Incompatible(_)));
        let legacy_listed = msg(json!({"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"m",
            "data":{"supported":["2025-11-25"]}}}));
        assert!(matches!(classify_discover(&legacy_listed), Probe::Legacy(_)));
        let garbage = msg(json!({"jsonrpc":"2.0","id":1,"result":"yes"}));
        assert!(matches!(classify_discover(&garbage), Probe::Legacy(_)));
        assert!(is_modern_error(-32022) && is_modern_error(-32020) && !is_modern_error(-32601));
    }

    #[test]
    fn initialize_results_must_name_a_legacy_version() {
        let h = hello_from_initialize(&json!({"protocolVersion":"2025-06-18","capabilities":{"tools":{}},
            "serverInfo":{"name":"s"}}))
        .unwrap();
        assert_eq!((h.era, h.protocol_version.as_str()), (Era::Legacy, "2025-06-18"));
        assert!(hello_from_initialize(&json!({"protocolVersion":"1999-01-01"})).is_err());
        assert!(hello_from_initialize(&json!({})).is_err());
    }

    #[test]
    fn modern_headers_mirror_the_body() {
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather"}}));
        let h = modern_headers(&m).unwrap();
        assert_eq!(h["mcp-protocol-version"], "2026-07-28");
        assert_eq!(h["mcp-method"], "tools/call");
        assert_eq!(h["mcp-name"], "get_weather");
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///ü"}}));
        let h = modern_headers(&m).unwrap();
        assert_eq!(protocol::decode_header_value(h["mcp-name"].as_bytes()).as_deref(), Some("file:///ü"));
        assert!(h["mcp-name"].to_str().unwrap().starts_with("=?base64?"));
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}));
        assert!(modern_headers(&m).unwrap().get("mcp-name").is_none());
        let m = msg(json!({"jsonrpc":"2.0","id":1,"method":"bad\nmethod"}));
        assert!(modern_headers(&m).is_err());
    }

    #[test]
    fn legacy_headers_carry_version_and_session() {
        let sid = http::HeaderValue::from_static("abc");
        let h = legacy_headers("2025-11-25", Some(&sid));
        assert_eq!(h["mcp-protocol-version"], "2025-11-25");
        assert_eq!(h["mcp-session-id"], "abc");
        assert!(legacy_headers("2025-11-25", None).get("mcp-session-id").is_none());
    }

    #[test]
    fn x_mcp_header_annotations_are_found_and_validated() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "opts":{"type":"object","properties":{"dry":{"type":"boolean","x-mcp-header":"Dry-Run"}}},
            "query":{"type":"string"}}});
        let found = param_headers(&schema).unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.contains(&ParamHeader { token: "Region".into(), path: vec!["region".into()] }));
        assert!(found.contains(&ParamHeader { token: "Dry-Run".into(), path: vec!["opts".into(), "dry".into()] }));
        let args = json!({"region":"us-west1","opts":{"dry":true},"query":"q"});
        let h = param_header_values(&found, Some(&args));
        assert_eq!(h["mcp-param-region"], "us-west1");
        assert_eq!(h["mcp-param-dry-run"], "true");
        let h = param_header_values(&found, Some(&json!({"region":"Zürich","opts":null})));
        assert_eq!(h["mcp-param-region"], "=?base64?WsO8cmljaA==?=");
        assert!(h.get("mcp-param-dry-run").is_none());

        for bad in [
            json!({"properties":{"a":{"type":"number","x-mcp-header":"A"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"bad header"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":""}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}),
            json!({"properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}),
            json!({"anyOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}),
            json!({"type":"string","x-mcp-header":"Root"}),
        ] {
            assert!(param_headers(&bad).is_err(), "{bad}");
        }
        // Data that merely looks like an annotation is not one.
        let ok = json!({"properties":{"a":{"type":"object","default":{"x-mcp-header":"no"}}}});
        assert_eq!(param_headers(&ok).unwrap(), vec![]);
    }
}
