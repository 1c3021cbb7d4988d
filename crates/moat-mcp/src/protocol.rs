//! The MCP revisions moat speaks and the names the spec reserves.
//!
//! See `README.md` in this crate for the spec decisions behind these.

/// The modern, stateless revision (per-request `_meta`, `server/discover`).
pub const MODERN: &str = "2026-07-28";
/// The newest legacy (session-based, `initialize`) revision.
pub const LEGACY_LATEST: &str = "2025-11-25";
/// Every version moat accepts, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[MODERN, LEGACY_LATEST, "2025-06-18", "2025-03-26", "2024-11-05"];
/// Legacy versions an `initialize` may negotiate, newest first.
pub const LEGACY_VERSIONS: &[&str] = &[LEGACY_LATEST, "2025-06-18", "2025-03-26", "2024-11-05"];
/// Modern versions a per-request `_meta` may name.
pub const MODERN_VERSIONS: &[&str] = &[MODERN];

/// `_meta` key: the request's protocol version (modern era).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key: the client's capabilities (modern era).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key: the client's identity (modern era).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key: the requested log level (modern era, deprecated).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// `_meta` key: the server's identity on results (modern era).
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key: the subscription a listen-stream notification belongs to.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// The per-request `_meta` keys that describe the hop, not the call: a
/// gateway rewrites these for each upstream instead of forwarding them.
pub const HOP_META_KEYS: &[&str] = &[META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL];

/// HTTP header: protocol version.
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// HTTP header: legacy session id.
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// HTTP header: mirrored JSON-RPC method (modern).
pub const HEADER_METHOD: &str = "mcp-method";
/// HTTP header: mirrored `params.name` / `params.uri` (modern).
pub const HEADER_NAME: &str = "mcp-name";
/// HTTP header prefix for `x-mcp-header` parameters (modern).
pub const HEADER_PARAM_PREFIX: &str = "mcp-param-";
/// HTTP header: SSE resumption point (legacy).
pub const HEADER_LAST_EVENT_ID: &str = "last-event-id";

/// True for a modern (stateless) protocol version.
pub fn is_modern(version: &str) -> bool {
    MODERN_VERSIONS.contains(&version)
}

/// The legacy version to answer an `initialize` asking for `requested`: the
/// same when supported, else the newest legacy version.
pub fn negotiate_legacy(requested: Option<&str>) -> &'static str {
    requested.and_then(|r| LEGACY_VERSIONS.iter().find(|v| **v == r).copied()).unwrap_or(LEGACY_LATEST)
}

/// Methods whose `Mcp-Name` header mirrors a body field, and which field.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Decodes an `Mcp-Name` / `Mcp-Param-*` header value: plain visible ASCII,
/// or the `=?base64?…?=` sentinel form. `None` when the value is malformed.
pub fn decode_header_value(raw: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(raw).ok()?;
    if !text.bytes().all(|b| b == b'\t' || (0x20..=0x7e).contains(&b)) {
        return None;
    }
    match text.strip_prefix("=?base64?").and_then(|t| t.strip_suffix("?=")) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(text.to_owned()),
    }
}

/// Encodes a value for an `Mcp-Name` / `Mcp-Param-*` header, using the
/// base64 sentinel when plain ASCII would be unsafe or ambiguous.
pub fn encode_header_value(value: &str) -> String {
    use base64::Engine as _;
    let sentinel = value.starts_with("=?base64?") && value.ends_with("?=");
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && !sentinel;
    if plain {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_legacy_versions() {
        assert_eq!(negotiate_legacy(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate_legacy(Some("2099-01-01")), LEGACY_LATEST);
        assert_eq!(negotiate_legacy(Some(MODERN)), LEGACY_LATEST);
        assert_eq!(negotiate_legacy(None), LEGACY_LATEST);
    }

    #[test]
    fn header_values_round_trip() {
        for v in ["get_weather", "Hello, 世界", " padded ", "line1\nline2", "=?base64?literal?=", ""] {
            let enc = encode_header_value(v);
            assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            assert_eq!(decode_header_value(enc.as_bytes()).as_deref(), Some(v), "{v:?}");
        }
        assert_eq!(decode_header_value(b"=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(), Some("Hello, 世界"));
        assert_eq!(decode_header_value(b"=?base64?***?="), None);
        assert_eq!(decode_header_value(b"bad\x01"), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            // No regression files written into the source tree.
            ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
        }

        /// Strings near the edges of the plain form: sentinels, spaces,
        /// tabs, controls and non-ASCII.
        fn tricky() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                3 => any::<char>().prop_map(|c| c.to_string()),
                3 => "[ -~]{1,6}",
                1 => Just("=?base64?".to_owned()),
                1 => Just("?=".to_owned()),
                1 => Just(" ".to_owned()),
                1 => Just("\t".to_owned()),
                1 => Just("\r\n".to_owned()),
            ];
            prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn header_values_round_trip_as_visible_ascii(s in prop_oneof![any::<String>(), tricky()]) {
                let enc = encode_header_value(&s);
                prop_assert!(enc.bytes().all(|b| (0x21..=0x7e).contains(&b) || b == b' '), "{:?}", enc);
                // HTTP trims leading/trailing whitespace: the value must not have any.
                prop_assert_eq!(enc.trim(), enc.as_str());
                prop_assert!(http::HeaderValue::from_str(&enc).is_ok());
                prop_assert_eq!(decode_header_value(enc.as_bytes()), Some(s));
            }

            #[test]
            fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128), sentinel in any::<bool>()) {
                let raw = if sentinel { [b"=?base64?".as_slice(), &bytes, b"?="].concat() } else { bytes };
                if let Some(v) = decode_header_value(&raw) {
                    // Whatever decodes was visible ASCII on the wire.
                    prop_assert!(raw.iter().all(|b| *b == b'\t' || (0x20..=0x7e).contains(b)));
                    // And encodes back to something that decodes the same.
                    prop_assert_eq!(decode_header_value(encode_header_value(&v).as_bytes()), Some(v));
                }
            }
        }
    }
}
