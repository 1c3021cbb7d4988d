//! The authorization server's few HTML pages: consent, organisation choice,
//! and errors. Everything interpolated is HTML-escaped; pages are never
//! cached or framed, and load nothing from anywhere.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moat_core::{Scope, Scopes};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Security headers every page carries.
pub fn harden(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · moat</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}}\
         button{{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}}code{{background:#f3f3f3;padding:0 .2rem}}\
         li{{margin:.3rem 0}}.muted{{color:#666;font-size:.9rem}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title),
    );
    let mut resp = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    harden(&mut resp);
    resp
}

/// An error page (used when the client's redirect URI cannot be trusted).
pub fn error(status: StatusCode, message: &str) -> Response {
    page(status, "Authorization failed", &format!("<p>{}</p>", escape(message)))
}

/// What a scope lets the client do, in words.
pub fn describe(scope: Scope) -> &'static str {
    match scope {
        Scope::McpTools => "list and call the tools of the MCP servers you may use",
        Scope::McpResources => "read the resources of those servers",
        Scope::McpPrompts => "use their prompts",
        Scope::AdminRead => "read your organisation's gateway settings, users and audit trail",
        Scope::AdminWrite => "change your organisation's gateway settings",
    }
}

/// What the consent page shows.
pub struct ConsentView<'a> {
    /// The pending request's handle (form field `request`).
    pub request: &'a str,
    /// The client's display name.
    pub client_name: &'a str,
    /// Where the client came from, in words.
    pub client_origin: &'a str,
    /// Host the browser returns to.
    pub redirect_host: &'a str,
    /// Scopes asked for.
    pub scopes: Scopes,
    /// The resource the token will be bound to.
    pub resource: &'a str,
    /// The user's name.
    pub user: &'a str,
    /// The organisation.
    pub tenant: &'a str,
}

/// The consent page: two buttons, `decision=allow|deny`.
pub fn consent(v: &ConsentView<'_>) -> Response {
    let items: String =
        v.scopes.iter().map(|s| format!("<li><code>{}</code>: {}</li>", s.as_str(), describe(s))).collect();
    let body = format!(
        "<p><strong>{client}</strong> <span class=\"muted\">({origin})</span> asks to act as <strong>{user}</strong> \
         of <strong>{tenant}</strong> on <code>{resource}</code>. It will be able to:</p><ul>{items}</ul>\
         <p class=\"muted\">After your answer the browser returns to <code>{host}</code>.</p>\
         <form method=\"post\" action=\"/oauth/consent\"><input type=\"hidden\" name=\"request\" value=\"{req}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        client = escape(v.client_name),
        origin = escape(v.client_origin),
        user = escape(v.user),
        tenant = escape(v.tenant),
        resource = escape(v.resource),
        host = escape(v.redirect_host),
        req = escape(v.request),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

/// The organisation chooser (when the client and the browser name none).
pub fn choose_tenant(request: &str) -> Response {
    let body = format!(
        "<p>Which organisation do you sign in to?</p>\
         <form method=\"post\" action=\"/oauth/login\"><input type=\"hidden\" name=\"request\" value=\"{}\">\
         <label>Organisation <input type=\"text\" name=\"tenant\" required autofocus></label> \
         <button type=\"submit\" name=\"decision\" value=\"continue\">Continue</button></form>",
        escape(request)
    );
    page(StatusCode::OK, "Sign in", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_interpolated() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
