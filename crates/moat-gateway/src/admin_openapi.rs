//! The OpenAPI 3.1 document of the admin API, served at
//! `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn op(summary: &str, tag: &str, body: Option<&str>, ok: (&str, &str)) -> Value {
    let mut o = json!({
        "summary": summary,
        "tags": [tag],
        "security": [{ "bearer": [] }],
        "parameters": [{ "name": "tenant", "in": "query", "required": false,
            "description": "Tenant name or id (operator only, when not the caller's own).",
            "schema": { "type": "string" } }],
        "responses": {
            ok.0: { "description": ok.1, "content": { "application/json": { "schema": { "type": "object" } } } },
            "401": { "$ref": "#/components/responses/Unauthorized" },
            "403": { "$ref": "#/components/responses/Forbidden" },
        }
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({ "required": true, "content": { "application/json": {
            "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    }
    o
}

fn id_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true,
        "description": "Id, or unique name within the tenant.", "schema": { "type": "string" } })
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/api/v1/whoami".into(),
        json!({ "get": op("The authenticated caller", "meta", None, ("200", "the principal")) }),
    );
    paths.insert(
        "/api/v1/tenants".into(),
        json!({
            "get": op("List tenants (operator: all; others: own)", "tenants", None, ("200", "tenants")),
            "post": op("Create a tenant (operator)", "tenants", Some("CreateTenant"), ("201", "the tenant")),
        }),
    );
    let mut t = json!({
        "get": op("Show a tenant", "tenants", None, ("200", "the tenant")),
        "delete": op("Delete a tenant and its users, keys and servers (operator)", "tenants", None, ("204", "deleted")),
    });
    t["parameters"] = json!([id_param("tenant")]);
    paths.insert("/api/v1/tenants/{tenant}".into(), t);
    paths.insert(
        "/api/v1/users".into(),
        json!({
            "get": op("List users", "users", None, ("200", "users")),
            "post": op("Create a user", "users", Some("CreateUser"), ("201", "the user")),
        }),
    );
    paths.insert("/api/v1/keys".into(), json!({
        "get": op("List API keys (never their secrets)", "keys", None, ("200", "keys")),
        "post": op("Create an API key; the response's `key` is shown once", "keys", Some("CreateKey"), ("201", "the key record and its secret")),
    }));
    let mut k = json!({
        "get": op("Show an API key", "keys", None, ("200", "the key")),
        "delete": op("Revoke an API key (effective on the next request)", "keys", None, ("204", "revoked")),
    });
    k["parameters"] = json!([id_param("key")]);
    paths.insert("/api/v1/keys/{key}".into(), k);
    let mut r = json!({ "post": op("Regenerate a key's secret; the old one stops working at once", "keys", None, ("200", "the key record and its new secret")) });
    r["parameters"] = json!([id_param("key")]);
    paths.insert("/api/v1/keys/{key}/rotate".into(), r);
    paths.insert(
        "/api/v1/servers".into(),
        json!({
            "get": op("List upstream servers", "servers", None, ("200", "servers")),
            "post": op("Register an upstream server", "servers", Some("CreateServer"), ("201", "the server")),
        }),
    );
    let mut s = json!({
        "get": op("Show a server", "servers", None, ("200", "the server")),
        "delete": op("Remove a server", "servers", None, ("204", "removed")),
    });
    s["parameters"] = json!([id_param("server")]);
    paths.insert("/api/v1/servers/{server}".into(), s);
    let mut audit = op("List audit events, newest first (metadata only)", "audit", None, ("200", "events"));
    if let Some(params) = audit["parameters"].as_array_mut() {
        for (name, ty, desc) in [
            ("scope", "string", "`all`: every tenant (operator only)"),
            ("since_ms", "integer", "only events at or after this unix time in ms"),
            ("action", "string", "only actions starting with this prefix"),
            ("limit", "integer", "at most this many (default 100, max 1000)"),
        ] {
            params.push(json!({ "name": name, "in": "query", "required": false, "description": desc, "schema": { "type": ty } }));
        }
    }
    paths.insert("/api/v1/audit".into(), json!({ "get": audit }));
    json!({
        "openapi": "3.1.0",
        "info": { "title": "moat admin API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Administration of a moat MCP gateway. Authenticate with `Authorization: Bearer <admin or owner API key>`." },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Unauthorized": { "description": "missing or invalid credentials" },
                "Forbidden": { "description": "authenticated but not allowed" },
            },
            "schemas": {
                "CreateTenant": { "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } },
                "CreateUser": { "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string" }, "email": { "type": "string" },
                    "kind": { "enum": ["human", "agent", "service", "workflow"] },
                    "role": { "enum": ["owner", "admin", "member"] } } },
                "CreateKey": { "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string" },
                    "role": { "enum": ["owner", "admin", "member"], "default": "member" },
                    "kind": { "enum": ["human", "agent", "service", "workflow"], "default": "agent" },
                    "user": { "type": "string", "description": "user id or name the key acts as" },
                    "expires_in": { "type": "integer", "description": "lifetime in seconds" } } },
                "CreateServer": { "type": "object", "required": ["name"], "properties": {
                    "name": { "type": "string" },
                    "transport": { "enum": ["stdio", "streamable-http", "sse"] },
                    "url": { "type": "string" },
                    "command": { "type": "array", "items": { "type": "string" } },
                    "env": { "type": "object", "additionalProperties": { "type": "string" } },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } } } },
            }
        }
    })
}
