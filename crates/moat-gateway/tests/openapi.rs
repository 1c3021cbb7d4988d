//! The admin API's OpenAPI document: generated from the handlers, it must
//! describe every route with the types the handlers really return.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

fn doc() -> Value {
    moat_gateway::admin_openapi::document()
}

/// Every route of `admin::routes()`, with its methods, as nested under `/api/v1`.
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v1/openapi.json", &["get"]),
    ("/api/v1/whoami", &["get"]),
    ("/api/v1/tenants", &["get", "post"]),
    ("/api/v1/tenants/{tenant}", &["get", "delete"]),
    ("/api/v1/users", &["get", "post"]),
    ("/api/v1/keys", &["get", "post"]),
    ("/api/v1/keys/{key}", &["get", "delete"]),
    ("/api/v1/keys/{key}/rotate", &["post"]),
    ("/api/v1/servers", &["get", "post"]),
    ("/api/v1/servers/{server}", &["get", "delete"]),
    ("/api/v1/audit", &["get"]),
    ("/api/v1/users/{user}", &["get", "delete"]),
    ("/api/v1/teams", &["get", "post"]),
    ("/api/v1/teams/{team}", &["get", "delete"]),
    ("/api/v1/teams/{team}/members/{user}", &["put", "delete"]),
    ("/api/v1/credentials", &["get", "post"]),
    ("/api/v1/credentials/{credential}", &["get", "delete"]),
    ("/api/v1/tenants/{tenant}/rotate-key", &["post"]),
    ("/api/v1/kek/rotate", &["post"]),
    ("/api/v1/approvals", &["get"]),
    ("/api/v1/approvals/{approval}", &["get"]),
    ("/api/v1/approvals/{approval}/approve", &["post"]),
    ("/api/v1/approvals/{approval}/deny", &["post"]),
    ("/api/v1/firewall/policies", &["get", "put", "delete"]),
    ("/api/v1/firewall/patterns", &["get", "post"]),
    ("/api/v1/firewall/patterns/{pattern}", &["delete"]),
    ("/api/v1/clients", &["get", "post"]),
    ("/api/v1/clients/{client}", &["get", "delete"]),
    ("/api/v1/clients/{client}/rotate", &["post"]),
    ("/api/v1/identity", &["get", "put"]),
    ("/api/v1/identity/revoke", &["post"]),
    ("/api/v1/identity/keys", &["get"]),
    ("/api/v1/identity/keys/rotate", &["post"]),
];

/// Routes that act in a tenant picked by `?tenant=`.
const TENANT_SCOPED: &[(&str, &str)] = &[
    ("/api/v1/users", "get"),
    ("/api/v1/users", "post"),
    ("/api/v1/keys", "get"),
    ("/api/v1/keys", "post"),
    ("/api/v1/keys/{key}", "get"),
    ("/api/v1/keys/{key}", "delete"),
    ("/api/v1/keys/{key}/rotate", "post"),
    ("/api/v1/servers", "get"),
    ("/api/v1/servers", "post"),
    ("/api/v1/servers/{server}", "get"),
    ("/api/v1/servers/{server}", "delete"),
    ("/api/v1/audit", "get"),
    ("/api/v1/users/{user}", "get"),
    ("/api/v1/users/{user}", "delete"),
    ("/api/v1/teams", "get"),
    ("/api/v1/teams", "post"),
    ("/api/v1/teams/{team}", "get"),
    ("/api/v1/teams/{team}", "delete"),
    ("/api/v1/teams/{team}/members/{user}", "put"),
    ("/api/v1/teams/{team}/members/{user}", "delete"),
    ("/api/v1/credentials", "get"),
    ("/api/v1/credentials", "post"),
    ("/api/v1/credentials/{credential}", "get"),
    ("/api/v1/credentials/{credential}", "delete"),
    ("/api/v1/approvals", "get"),
    ("/api/v1/approvals/{approval}", "get"),
    ("/api/v1/approvals/{approval}/approve", "post"),
    ("/api/v1/approvals/{approval}/deny", "post"),
    ("/api/v1/firewall/policies", "get"),
    ("/api/v1/firewall/policies", "put"),
    ("/api/v1/firewall/policies", "delete"),
    ("/api/v1/firewall/patterns", "get"),
    ("/api/v1/firewall/patterns", "post"),
    ("/api/v1/firewall/patterns/{pattern}", "delete"),
    ("/api/v1/clients", "get"),
    ("/api/v1/clients", "post"),
    ("/api/v1/identity", "put"),
    ("/api/v1/identity/revoke", "post"),
    ("/api/v1/identity/keys/rotate", "post"),
];

fn op<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} missing");
    op
}

fn json_schema<'a>(op: &'a Value, status: &str) -> &'a Value {
    &op["responses"][status]["content"]["application/json"]["schema"]
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "component schema {name} missing");
    s
}

/// The property names of a schema, following `allOf` and `$ref`.
fn properties(doc: &Value, s: &Value) -> Vec<String> {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        return properties(doc, schema(doc, name));
    }
    let mut out: Vec<String> = s["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    for part in s["allOf"].as_array().into_iter().flatten() {
        out.extend(properties(doc, part));
    }
    out
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn is_openapi_3_1_with_bearer_security() {
    let d = doc();
    assert!(d["openapi"].as_str().unwrap().starts_with("3.1."), "{}", d["openapi"]);
    assert_eq!(d["info"]["title"], "moat admin API");
    assert_eq!(d["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(d["security"], serde_json::json!([{ "bearer": [] }]));
    let scheme = &d["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    // The document itself is readable without a token.
    assert_eq!(op(&d, "/api/v1/openapi.json", "get")["security"], serde_json::json!([{}]));
}

#[test]
fn describes_every_route_and_nothing_else() {
    let d = doc();
    let paths = d["paths"].as_object().unwrap();
    for (path, methods) in ROUTES {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} missing"));
        let mut documented: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        documented.retain(|k| ["get", "post", "put", "patch", "delete"].contains(k));
        documented.sort_unstable();
        let mut expected = methods.to_vec();
        expected.sort_unstable();
        assert_eq!(documented, expected, "{path}");
    }
    assert_eq!(paths.len(), ROUTES.len(), "undocumented extra paths: {:?}", paths.keys());
}

#[test]
fn every_operation_declares_its_refusals_and_params() {
    let d = doc();
    for (path, methods) in ROUTES {
        for method in *methods {
            let o = op(&d, path, method);
            assert!(o["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path}: no tag");
            if *path == "/api/v1/openapi.json" {
                continue;
            }
            assert_eq!(
                json_schema(o, "401")["$ref"],
                "#/components/schemas/RpcError",
                "{method} {path}: 401 not declared"
            );
            assert!(o["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(), "{method} {path}");
            if *path != "/api/v1/whoami" {
                assert_eq!(json_schema(o, "403")["$ref"], "#/components/schemas/ApiError", "{method} {path}: 403");
            }
            // Every `{param}` of the path is declared as a required path parameter.
            for name in path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')) {
                let params = o["parameters"].as_array().unwrap_or_else(|| panic!("{method} {path}: no params"));
                assert!(
                    params.iter().any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                    "{method} {path}: path param {name}"
                );
            }
        }
    }
    for (path, method) in TENANT_SCOPED {
        let o = op(&d, path, method);
        let params = o["parameters"].as_array().unwrap_or_else(|| panic!("{method} {path}: no params"));
        assert!(
            params.iter().any(|p| p["name"] == "tenant" && p["in"] == "query" && p["required"] != true),
            "{method} {path}: ?tenant= missing"
        );
        let lookups = path.contains('{') || *method == "get" || *path == "/api/v1/audit";
        if lookups || *method == "post" {
            assert!(o["responses"]["404"].is_object(), "{method} {path}: 404 (unknown tenant) not declared");
        }
    }
    for name in ["scope", "since_ms", "action", "limit"] {
        let params = op(&d, "/api/v1/audit", "get")["parameters"].as_array().unwrap();
        assert!(params.iter().any(|p| p["name"] == name && p["in"] == "query"), "audit param {name}");
    }
    for (path, status) in [
        ("/api/v1/tenants/{tenant}", "404"),
        ("/api/v1/keys/{key}", "404"),
        ("/api/v1/servers/{server}", "404"),
        ("/api/v1/tenants", "409"),
        ("/api/v1/users", "409"),
        ("/api/v1/keys", "409"),
        ("/api/v1/servers", "409"),
    ] {
        let method = if status == "409" { "post" } else { "get" };
        assert_eq!(json_schema(op(&d, path, method), status)["$ref"], "#/components/schemas/ApiError", "{path}");
    }
    assert!(op(&d, "/api/v1/keys/{key}/rotate", "post")["responses"]["409"].is_object(), "rotate of a revoked key");
}

#[test]
fn list_endpoints_return_arrays_of_records() {
    let d = doc();
    for (path, record) in [
        ("/api/v1/tenants", "TenantRecord"),
        ("/api/v1/users", "UserRecord"),
        ("/api/v1/keys", "ApiKeyRecord"),
        ("/api/v1/servers", "ServerRecord"),
        ("/api/v1/audit", "AuditEvent"),
    ] {
        let s = json_schema(op(&d, path, "get"), "200");
        assert_eq!(s["type"], "array", "{path}: {s}");
        assert_eq!(s["items"]["$ref"], format!("#/components/schemas/{record}"), "{path}");
        schema(&d, record);
    }
}

#[test]
fn single_objects_creations_and_deletions_have_their_shapes() {
    let d = doc();
    for (path, method, status, record) in [
        ("/api/v1/whoami", "get", "200", "Whoami"),
        ("/api/v1/tenants", "post", "201", "TenantRecord"),
        ("/api/v1/tenants/{tenant}", "get", "200", "TenantRecord"),
        ("/api/v1/users", "post", "201", "UserRecord"),
        ("/api/v1/keys", "post", "201", "CreatedKey"),
        ("/api/v1/keys/{key}", "get", "200", "ApiKeyRecord"),
        ("/api/v1/keys/{key}/rotate", "post", "200", "CreatedKey"),
        ("/api/v1/servers", "post", "201", "ServerRecord"),
        ("/api/v1/servers/{server}", "get", "200", "ServerRecord"),
    ] {
        let s = json_schema(op(&d, path, method), status);
        assert_eq!(s["$ref"], format!("#/components/schemas/{record}"), "{method} {path}: {s}");
    }
    for (path, body) in [
        ("/api/v1/tenants", "CreateTenant"),
        ("/api/v1/users", "CreateUser"),
        ("/api/v1/keys", "CreateKey"),
        ("/api/v1/servers", "CreateServer"),
    ] {
        let rb = &op(&d, path, "post")["requestBody"];
        assert_eq!(rb["required"], true, "{path}");
        assert_eq!(rb["content"]["application/json"]["schema"]["$ref"], format!("#/components/schemas/{body}"));
        let s = schema(&d, body);
        // CreateServer is `oneOf` an HTTP and a stdio variant.
        let variants = match s["oneOf"].as_array() {
            Some(v) => v.iter().map(|r| schema(&d, r["$ref"].as_str().unwrap().rsplit('/').next().unwrap())).collect(),
            None => vec![s],
        };
        for v in variants {
            assert!(v["required"].as_array().unwrap().contains(&"name".into()), "{body}.name: {v}");
        }
    }
    let server = schema(&d, "CreateServer");
    let http = schema(&d, "CreateHttpServer");
    let stdio = schema(&d, "CreateStdioServer");
    assert_eq!(server["oneOf"].as_array().unwrap().len(), 2);
    assert!(http["required"].as_array().unwrap().contains(&"url".into()));
    assert_eq!(http["properties"]["command"]["type"], "null");
    assert!(stdio["required"].as_array().unwrap().contains(&"command".into()));
    assert_eq!(stdio["properties"]["url"]["type"], "null");
    for (path, method) in [
        ("/api/v1/tenants/{tenant}", "delete"),
        ("/api/v1/keys/{key}", "delete"),
        ("/api/v1/servers/{server}", "delete"),
    ] {
        let r = &op(&d, path, method)["responses"]["204"];
        assert!(r.is_object(), "{method} {path}: 204");
        assert!(r.get("content").is_none(), "{method} {path}: 204 with a body");
    }
}

#[test]
fn key_schemas_never_carry_the_hash_and_creation_carries_the_secret() {
    let d = doc();
    let record = properties(&d, schema(&d, "ApiKeyRecord"));
    assert!(record.contains(&"public_id".to_owned()), "{record:?}");
    assert!(!record.iter().any(|p| p.contains("secret") || p.contains("hash")), "{record:?}");
    assert!(d["components"]["schemas"].get("AuthKeyRecord").is_none());
    let created = properties(&d, schema(&d, "CreatedKey"));
    assert!(created.contains(&"key".to_owned()), "{created:?}");
    assert!(created.contains(&"public_id".to_owned()), "record fields flattened: {created:?}");
    assert!(!created.iter().any(|p| p.contains("hash")), "{created:?}");
    let text = d.to_string();
    assert!(!text.contains("secret_hash"), "the document mentions secret_hash");
}

#[test]
fn errors_match_what_the_handlers_render() {
    let d = doc();
    let api_error = schema(&d, "ApiError");
    assert_eq!(api_error["required"], serde_json::json!(["error"]));
    let mut detail = properties(&d, &api_error["properties"]["error"]);
    detail.sort_unstable();
    assert_eq!(detail, ["code", "message"]);
    let mut rpc = properties(&d, schema(&d, "RpcError"));
    rpc.sort_unstable();
    assert_eq!(rpc, ["error", "id", "jsonrpc"]);
}

#[test]
fn enums_and_ids_are_strings() {
    let d = doc();
    for (name, values) in [
        ("Role", &["member", "admin", "owner"][..]),
        ("PrincipalKind", &["human", "agent", "service", "workflow"]),
        ("Transport", &["stdio", "streamable-http", "sse"]),
        ("ServerSource", &["config", "api"]),
        ("AuditResult", &["ok", "denied", "error"]),
    ] {
        let s = schema(&d, name);
        assert_eq!(s["type"], "string", "{name}");
        let mut got: Vec<&str> = s["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let mut want = values.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{name}");
    }
    for id in ["TenantId", "UserId", "ApiKeyId", "ServerId", "AuditId"] {
        assert_eq!(schema(&d, id)["type"], "string", "{id}");
    }
}

#[test]
fn every_reference_resolves() {
    let d = doc();
    let mut refs = Vec::new();
    collect_refs(&d, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected ref {r}"));
        schema(&d, name);
    }
}

#[test]
fn creations_link_to_what_uses_their_ids() {
    let d = doc();
    for (path, links) in [
        ("/api/v1/tenants", &["show_tenant", "delete_tenant"][..]),
        ("/api/v1/keys", &["show_key", "rotate_key", "revoke_key"]),
        ("/api/v1/servers", &["show_server", "delete_server"]),
    ] {
        let declared = op(&d, path, "post")["responses"]["201"]["links"].as_object().unwrap();
        let mut targets: Vec<&str> = declared.values().map(|l| l["operationId"].as_str().unwrap()).collect();
        targets.sort_unstable();
        let mut want = links.to_vec();
        want.sort_unstable();
        assert_eq!(targets, want, "{path}");
        for link in declared.values() {
            assert!(link.get("operation_id").is_none(), "{link}");
            let target = link["operationId"].as_str().unwrap();
            let exists = d["paths"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|item| item.as_object().unwrap().values())
                .any(|o| o["operationId"] == target);
            assert!(exists, "link to unknown operation {target}");
        }
    }
}
