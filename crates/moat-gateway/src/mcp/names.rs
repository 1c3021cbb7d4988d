//! Namespacing on the aggregated endpoint.
//!
//! Tools and prompts are named `<server>__<name>`; resources keep their name
//! rule (`<server>__<name>`) and have their URI prefixed as
//! `<server>+<uri>` (a valid URI: `+` is allowed in a scheme). Server names
//! are `[a-z0-9-]` only, so the first `__` or `+` always ends the server
//! name, whatever the upstream's own names contain.

use serde_json::Value;

/// Separator between server and tool/prompt/resource name.
pub const NAME_SEP: &str = "__";
/// Separator between server and resource URI.
pub const URI_SEP: char = '+';

/// `<server>__<name>`.
pub fn prefix_name(server: &str, name: &str) -> String {
    format!("{server}{NAME_SEP}{name}")
}

/// `<server>+<uri>`.
pub fn prefix_uri(server: &str, uri: &str) -> String {
    format!("{server}{URI_SEP}{uri}")
}

/// Splits `<server>__<name>`.
pub fn split_name(full: &str) -> Option<(&str, &str)> {
    let (server, name) = full.split_once(NAME_SEP)?;
    (!server.is_empty() && !name.is_empty() && moat_core::validate_name(server).is_ok()).then_some((server, name))
}

/// Splits `<server>+<uri>`.
pub fn split_uri(full: &str) -> Option<(&str, &str)> {
    let (server, uri) = full.split_once(URI_SEP)?;
    (!server.is_empty() && !uri.is_empty() && moat_core::validate_name(server).is_ok()).then_some((server, uri))
}

/// The array key of a list method's result.
pub fn list_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/list" => Some("tools"),
        "prompts/list" => Some("prompts"),
        "resources/list" => Some("resources"),
        "resources/templates/list" => Some("resourceTemplates"),
        _ => None,
    }
}

/// Prefixes one listed item in place.
pub fn prefix_item(method: &str, server: &str, item: &mut Value) {
    let Some(obj) = item.as_object_mut() else { return };
    if let Some(Value::String(name)) = obj.get_mut("name") {
        *name = prefix_name(server, name);
    }
    let uri_key = match method {
        "resources/list" => "uri",
        "resources/templates/list" => "uriTemplate",
        _ => return,
    };
    if let Some(Value::String(uri)) = obj.get_mut(uri_key) {
        *uri = prefix_uri(server, uri);
    }
}

/// Prefixes resource URIs inside content blocks of a result (resource links
/// and embedded resources), so that a client can read them back through the
/// aggregated endpoint.
pub fn prefix_content_uris(server: &str, result: &mut Value) {
    if let Some(blocks) = result.get_mut("content").and_then(Value::as_array_mut) {
        for block in blocks {
            prefix_block(server, block);
        }
    }
    // prompts/get: messages[].content
    if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
        for m in messages {
            if let Some(block) = m.get_mut("content") {
                prefix_block(server, block);
            }
        }
    }
}

fn prefix_block(server: &str, block: &mut Value) {
    match block.get("type").and_then(Value::as_str) {
        Some("resource_link") => {
            if let Some(Value::String(uri)) = block.get_mut("uri") {
                *uri = prefix_uri(server, uri);
            }
        }
        Some("resource") => {
            if let Some(Value::String(uri)) = block.get_mut("resource").and_then(|r| r.get_mut("uri")) {
                *uri = prefix_uri(server, uri);
            }
        }
        _ => {}
    }
}

/// Prefixes `contents[].uri` of a `resources/read` result.
pub fn prefix_read_result(server: &str, result: &mut Value) {
    if let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) {
        for c in contents {
            if let Some(Value::String(uri)) = c.get_mut("uri") {
                *uri = prefix_uri(server, uri);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_on_the_first_separator() {
        assert_eq!(split_name("everything__echo"), Some(("everything", "echo")));
        assert_eq!(split_name("a__b__c"), Some(("a", "b__c")));
        assert_eq!(split_name("echo"), None);
        assert_eq!(split_name("__echo"), None);
        assert_eq!(split_name("Bad__echo"), None);
        assert_eq!(split_uri("srv+git+https://x/y"), Some(("srv", "git+https://x/y")));
        assert_eq!(split_uri("test://static"), None);
    }

    #[test]
    fn prefixes_items_and_content() {
        let mut r = json!({"name":"r1","uri":"test://static/1"});
        prefix_item("resources/list", "ev", &mut r);
        assert_eq!(r, json!({"name":"ev__r1","uri":"ev+test://static/1"}));
        let mut t = json!({"name":"tpl","uriTemplate":"test://x/{id}"});
        prefix_item("resources/templates/list", "ev", &mut t);
        assert_eq!(t["uriTemplate"], "ev+test://x/{id}");
        let mut res = json!({"content":[{"type":"resource_link","uri":"a://b"},{"type":"text","text":"hi"},
            {"type":"resource","resource":{"uri":"c://d","text":"x"}}]});
        prefix_content_uris("ev", &mut res);
        assert_eq!(res["content"][0]["uri"], "ev+a://b");
        assert_eq!(res["content"][2]["resource"]["uri"], "ev+c://d");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            // No regression files written into the source tree.
            ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
        }

        /// Valid server names: `[a-z0-9]+(-[a-z0-9]+)*`, at most 63 long.
        fn server() -> impl Strategy<Value = String> {
            "[a-z0-9]{1,12}(-[a-z0-9]{1,12}){0,5}".prop_filter("at most 63", |s| s.len() <= 63)
        }

        /// Non-empty names and URIs, separators included.
        fn inner() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                3 => any::<char>().prop_map(|c| c.to_string()),
                1 => Just("__".to_owned()),
                1 => Just("_".to_owned()),
                1 => Just("+".to_owned()),
                1 => Just("://".to_owned()),
            ];
            prop::collection::vec(piece, 1..16).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn names_split_back(s in server(), n in prop_oneof![inner(), any::<String>().prop_filter("non-empty", |n| !n.is_empty())]) {
                prop_assert!(moat_core::validate_name(&s).is_ok(), "{}", s);
                let full = prefix_name(&s, &n);
                prop_assert_eq!(split_name(&full), Some((s.as_str(), n.as_str())));
            }

            #[test]
            fn uris_split_back(s in server(), u in prop_oneof![inner(), any::<String>().prop_filter("non-empty", |u| !u.is_empty())]) {
                let full = prefix_uri(&s, &u);
                prop_assert_eq!(split_uri(&full), Some((s.as_str(), u.as_str())));
            }

            #[test]
            fn splitting_never_panics_and_yields_valid_servers(full in any::<String>()) {
                for (server, rest) in [split_name(&full), split_uri(&full)].into_iter().flatten() {
                    prop_assert!(moat_core::validate_name(server).is_ok());
                    prop_assert!(!rest.is_empty());
                }
            }
        }
    }
}
