//! Liveness, readiness, metrics and protected-resource metadata.

use crate::state::App;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: storage and the key provider answer.
pub async fn readyz(State(app): State<App>) -> Response {
    let db = app.store.ping().await.map_err(|e| e.to_string());
    let kp = app.vault.check().await;
    let ready = db.is_ok() && kp.is_ok() && !app.shutdown.is_cancelled();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {
            "database": db.err().unwrap_or_else(|| "ok".into()),
            "key_provider": kp.err().unwrap_or_else(|| "ok".into()),
            "shutting_down": app.shutdown.is_cancelled(),
        }
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> Response {
    match crate::telemetry::metrics_handle() {
        Some(h) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder unavailable").into_response(),
    }
}

/// `GET /.well-known/oauth-protected-resource[/<path>]` (RFC 9728).
pub async fn protected_resource(State(app): State<App>, path: Option<Path<String>>) -> Response {
    let base = app.cfg.base_url();
    let resource = match path {
        Some(Path(p)) => format!("{base}/{}", p.trim_start_matches('/')),
        None => base.clone(),
    };
    let scopes: &[&str] = if resource.starts_with(&format!("{base}/api")) {
        &["admin:read", "admin:write"]
    } else {
        &["mcp:tools", "mcp:resources", "mcp:prompts"]
    };
    let mut resp = Json(json!({
        "resource": resource,
        "resource_name": "moat MCP gateway",
        "authorization_servers": [app.identity.issuer()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
        "resource_documentation": format!("{base}/api/v1/openapi.json"),
    }))
    .into_response();
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("max-age=300"));
    resp
}
