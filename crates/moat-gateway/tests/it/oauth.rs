//! The authorization server in process: the code flow from a logged-in
//! browser session through consent to tokens, single-use codes and refresh
//! tokens, client credentials with scope limits, audience and tenant-wide
//! revocation. (The identity-provider leg and real OAuth clients are in
//! `tests/interop/test_oauth.py`.)

use crate::support::{Gw, HOST, Resp, modern_params, modern_request, rpc};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use moat_core::{PrincipalKind, Role, UserId, new_id, now_ms};
use moat_store::{ClientKind, ClientSource, NewUser, OAuthClientRecord};
use serde_json::{Value, json};

const REDIRECT: &str = "http://127.0.0.1:4711/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn public_client(gw: &Gw) -> OAuthClientRecord {
    OAuthClientRecord {
        id: new_id(),
        tenant_id: Some(gw.tenant.id.clone()),
        name: "app".into(),
        kind: ClientKind::Public,
        source: ClientSource::Admin,
        user_id: None,
        auth_method: "none".into(),
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec![],
        metadata: json!({}),
        created_at: now_ms(),
        updated_at: now_ms(),
        revoked_at: None,
    }
}

/// A human with a live browser session; returns the session cookie value.
async fn logged_in(gw: &Gw, name: &str, role: Role) -> (UserId, String) {
    let u = gw
        .store
        .create_user(&gw.tenant.id, NewUser { name: name.into(), email: None, kind: PrincipalKind::Human, role })
        .await
        .unwrap();
    let raw = moat_auth::opaque_token("").unwrap();
    use secrecy::ExposeSecret as _;
    let raw = raw.expose_secret().to_owned();
    gw.store
        .insert_browser_session(&gw.tenant.id, &moat_auth::token_digest(&raw), &u.id, now_ms() + 60_000)
        .await
        .unwrap();
    let tenant = &gw.tenant.id;
    let tag = gw.state.vault.mac(tenant, "moat_session", format!("{tenant}.{raw}").as_bytes()).await.unwrap();
    (u.id, format!("{tenant}.{raw}.{tag}"))
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path).header(header::HOST, HOST);
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    b.body(Body::empty()).unwrap()
}

fn form(path: &str, body: &str, cookie: Option<&str>, basic: Option<(&str, &str)>) -> Request<Body> {
    let mut b = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some((id, secret)) = basic {
        use base64::Engine as _;
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        b = b.header(header::AUTHORIZATION, format!("Basic {v}"));
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn authorize_url(client: &str, extra: &str) -> String {
    format!(
        "/oauth/authorize?response_type=code&client_id={}&redirect_uri={}&state=st8&code_challenge={CHALLENGE}\
         &code_challenge_method=S256&resource={}{extra}",
        enc(client),
        enc(REDIRECT),
        enc(&format!("http://{HOST}/mcp"))
    )
}

fn query(location: &str) -> std::collections::HashMap<String, String> {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn set_cookie(resp: &Resp, name: &str) -> Option<String> {
    resp.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        let (kv, _) = c.split_once(';')?;
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// Runs authorize → consent (allow) and returns the redirect's query.
async fn code_for(gw: &Gw, client: &str, session: &str) -> std::collections::HashMap<String, String> {
    let page = gw.send(get(&authorize_url(client, ""), Some(&format!("moat_session={session}")))).await;
    if page.status == StatusCode::FOUND {
        return query(&page.header("location").unwrap());
    }
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(html.contains("action=\"/oauth/consent\"") && html.contains("mcp:tools"), "{html}");
    let set = page.header("set-cookie").unwrap_or_default();
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Lax"), "{set}");
    let handle = set_cookie(&page, "moat_authz").unwrap();
    let cookies = format!("moat_session={session}; moat_authz={handle}");
    let resp = gw.send(form("/oauth/consent", &format!("request={handle}&decision=allow"), Some(&cookies), None)).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let location = resp.header("location").unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    query(&location)
}

async fn token(gw: &Gw, body: &str, basic: Option<(&str, &str)>) -> (StatusCode, Value) {
    let resp = gw.send(form("/oauth/token", body, None, basic)).await;
    if resp.status == StatusCode::OK {
        assert_eq!(resp.header("cache-control").as_deref(), Some("no-store"));
    }
    (resp.status, serde_json::from_slice(&resp.body).unwrap_or(Value::Null))
}

async fn tools_list(gw: &Gw, bearer: &str, path: &str) -> Resp {
    let body = rpc(1, "tools/list", modern_params(json!({})));
    gw.send(modern_request(path, bearer, &body, "application/json")).await
}

#[tokio::test]
async fn code_flow_consent_tokens_and_single_use() {
    let gw = Gw::start().await;
    let client = public_client(&gw);
    gw.store.insert_oauth_client(&client, None).await.unwrap();
    let (_alice, session) = logged_in(&gw, "alice", Role::Member).await;

    let q = code_for(&gw, &client.id, &session).await;
    assert_eq!(q.get("state").map(String::as_str), Some("st8"));
    assert_eq!(q.get("iss").map(String::as_str), Some(format!("http://{HOST}").as_str()));
    let code = q["code"].clone();
    // Consent is remembered: the second request goes straight back with a code.
    let again = code_for(&gw, &client.id, &session).await;
    assert!(again.contains_key("code"));

    let exchange = |code: &str, verifier: &str| {
        format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}&client_id={}",
            enc(code),
            enc(REDIRECT),
            enc(&client.id)
        )
    };
    // A wrong verifier fails (and spends that code).
    let (status, body) = token(&gw, &exchange(&again["code"], &"x".repeat(43)), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    let (status, body) = token(&gw, &exchange(&code, VERIFIER), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "mcp:tools mcp:resources mcp:prompts");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("moat_rt_"));
    assert_eq!(tools_list(&gw, &access, "/mcp").await.status, StatusCode::OK);
    // The audience is /mcp: the admin API is another resource.
    let api = gw.send(get_bearer("/api/v1/whoami", &access)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    // Refresh rotates; the old refresh token presented again revokes the grant.
    let refresh_body =
        |rt: &str| format!("grant_type=refresh_token&refresh_token={}&client_id={}", enc(rt), enc(&client.id));
    let (status, rotated) = token(&gw, &refresh_body(&refresh), None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let access2 = rotated["access_token"].as_str().unwrap().to_owned();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    assert_eq!(tools_list(&gw, &access2, "/mcp").await.status, StatusCode::OK);
    let (status, body) = token(&gw, &refresh_body(&refresh), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(tools_list(&gw, &access2, "/mcp").await.status, StatusCode::UNAUTHORIZED, "the family is revoked");
    let (_, body) = token(&gw, &refresh_body(&refresh2), None).await;
    assert_eq!(body["error"], "invalid_grant", "its newest refresh token too");

    // A code redeemed twice: the second fails and what the first issued dies.
    let q = code_for(&gw, &client.id, &session).await;
    let (status, first) = token(&gw, &exchange(&q["code"], VERIFIER), None).await;
    assert_eq!(status, StatusCode::OK);
    let first = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(tools_list(&gw, &first, "/mcp").await.status, StatusCode::OK);
    let (status, body) = token(&gw, &exchange(&q["code"], VERIFIER), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert_eq!(tools_list(&gw, &first, "/mcp").await.status, StatusCode::UNAUTHORIZED);
    gw.finish().await;
}

fn get_bearer(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn authorize_refuses_without_redirecting_until_the_client_is_verified() {
    let gw = Gw::start().await;
    let client = public_client(&gw);
    gw.store.insert_oauth_client(&client, None).await.unwrap();
    let (_, session) = logged_in(&gw, "bob", Role::Member).await;
    let cookie = format!("moat_session={session}");

    // Unknown client, foreign redirect: an error page, never a redirect.
    let r = gw.send(get(&authorize_url("no-such-client", ""), Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.header("location").is_none());
    let evil = authorize_url(&client.id, "").replace(&enc(REDIRECT), &enc("https://evil.example/cb"));
    let r = gw.send(get(&evil, Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.header("location").is_none() && !r.text().contains("evil.example"));
    // Loopback may vary the port (RFC 8252).
    let other_port = authorize_url(&client.id, "").replace(&enc(REDIRECT), &enc("http://127.0.0.1:9/callback"));
    assert_eq!(gw.send(get(&other_port, Some(&cookie))).await.status, StatusCode::OK);

    // After verification, errors go back to the client with state and iss.
    for (bad, error) in [
        (
            authorize_url(&client.id, "").replace("&code_challenge_method=S256", "&code_challenge_method=plain"),
            "invalid_request",
        ),
        (authorize_url(&client.id, "").replace("&code_challenge_method=S256", ""), "invalid_request"),
        (authorize_url(&client.id, "").replace(&format!("&code_challenge={CHALLENGE}"), ""), "invalid_request"),
        (
            authorize_url(&client.id, "").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (authorize_url(&client.id, "&scope=mcp:tools%20root"), "invalid_scope"),
        (
            authorize_url(&client.id, "")
                .replace(&enc(&format!("http://{HOST}/mcp")), &enc("https://other.example/mcp")),
            "invalid_target",
        ),
    ] {
        let r = gw.send(get(&bad, Some(&cookie))).await;
        assert_eq!(r.status, StatusCode::FOUND, "{bad}: {}", r.text());
        let q = query(&r.header("location").unwrap());
        assert_eq!(q.get("error").map(String::as_str), Some(error), "{bad}");
        assert_eq!(q.get("state").map(String::as_str), Some("st8"));
        assert!(q.contains_key("iss"));
        assert!(!q.contains_key("code"));
    }
    // A forged session cookie (tag altered) is no session: the browser is
    // sent to log in, and this tenant has no identity provider.
    let mut forged = session.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = gw.send(get(&authorize_url(&client.id, ""), Some(&format!("moat_session={forged}")))).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let q = query(&r.header("location").unwrap());
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert!(q["error_description"].contains("identity provider"), "{q:?}");

    // A repeated parameter is refused outright.
    let r = gw.send(get(&format!("{}&state=again", authorize_url(&client.id, "")), Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A consent form posted from another browser (no request cookie) is refused.
    let page = gw.send(get(&authorize_url(&client.id, ""), Some(&cookie))).await;
    let handle = set_cookie(&page, "moat_authz").unwrap();
    let r = gw.send(form("/oauth/consent", &format!("request={handle}&decision=allow"), Some(&cookie), None)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Deny goes back with access_denied.
    let both = format!("{cookie}; moat_authz={handle}");
    let r = gw.send(form("/oauth/consent", &format!("request={handle}&decision=deny"), Some(&both), None)).await;
    assert_eq!(query(&r.header("location").unwrap()).get("error").map(String::as_str), Some("access_denied"));
    gw.finish().await;
}

#[tokio::test]
async fn client_credentials_scopes_audience_and_revocation() {
    let gw = Gw::start().await;
    let created =
        gw.post_json("/api/v1/clients", &json!({ "name": "ci", "kind": "service", "scopes": ["mcp:tools"] })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let c: Value = serde_json::from_slice(&created.body).unwrap();
    let (id, secret) = (c["client_id"].as_str().unwrap().to_owned(), c["client_secret"].as_str().unwrap().to_owned());
    // A service client can never hold admin rights.
    let refused = gw.post_json("/api/v1/clients", &json!({ "name": "ops", "scopes": ["admin:write"] })).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    // Its secret is in no listing.
    let listed = gw.send(get_bearer("/api/v1/clients", &gw.key)).await;
    assert!(!listed.text().contains(&secret));

    let (status, body) = token(&gw, "grant_type=client_credentials&scope=admin:read", Some((&id, &secret))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")));
    let (status, body) = token(&gw, "grant_type=client_credentials", Some((&id, "moat_cs_wrong"))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    let resource = enc(&format!("http://{HOST}/mcp/one"));
    let (status, body) =
        token(&gw, &format!("grant_type=client_credentials&resource={resource}"), Some((&id, &secret))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none(), "no refresh token for client credentials");
    let narrow = body["access_token"].as_str().unwrap().to_owned();
    // Audience /mcp/one: not /mcp, not /mcp/two.
    assert_eq!(tools_list(&gw, &narrow, "/mcp").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(tools_list(&gw, &narrow, "/mcp/two").await.status, StatusCode::UNAUTHORIZED);

    let (_, body) = token(&gw, "grant_type=client_credentials", Some((&id, &secret))).await;
    let wide = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(body["scope"], "mcp:tools");
    assert_eq!(tools_list(&gw, &wide, "/mcp").await.status, StatusCode::OK);
    // Without mcp:prompts, prompts are refused inside MCP.
    let prompts = rpc(2, "prompts/list", modern_params(json!({})));
    let r = gw.send(modern_request("/mcp", &wide, &prompts, "application/json")).await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["error"]["code"], -32003, "{v}");
    // The admin API needs admin scopes.
    assert_eq!(gw.send(get_bearer("/api/v1/whoami", &wide)).await.status, StatusCode::FORBIDDEN);
    // A tampered token fails.
    let mut parts: Vec<String> = wide.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert_eq!(tools_list(&gw, &parts.join("."), "/mcp").await.status, StatusCode::UNAUTHORIZED);

    // RFC 7009: the client revokes its token.
    let r = gw.send(form("/oauth/revoke", &format!("token={}", enc(&wide)), None, Some((&id, &secret)))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(tools_list(&gw, &wide, "/mcp").await.status, StatusCode::UNAUTHORIZED);

    // Tenant-wide revocation ends every token of the tenant, not API keys.
    let (_, body) = token(&gw, "grant_type=client_credentials", Some((&id, &secret))).await;
    let fresh = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(tools_list(&gw, &fresh, "/mcp").await.status, StatusCode::OK);
    let r = gw.post_json("/api/v1/identity/revoke", &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(tools_list(&gw, &fresh, "/mcp").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(tools_list(&gw, &gw.key, "/mcp").await.status, StatusCode::OK);
    // New tokens work again (issued after the watermark).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, body) = token(&gw, "grant_type=client_credentials", Some((&id, &secret))).await;
    assert_eq!(tools_list(&gw, body["access_token"].as_str().unwrap(), "/mcp").await.status, StatusCode::OK);

    // Revoking the client ends its token requests and its live tokens.
    let (_, body) = token(&gw, "grant_type=client_credentials", Some((&id, &secret))).await;
    let live = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        gw.send(
            Request::delete("/api/v1/clients/ci")
                .header(header::HOST, HOST)
                .header(header::AUTHORIZATION, format!("Bearer {}", gw.key))
                .body(Body::empty())
                .unwrap()
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let (status, _) = token(&gw, "grant_type=client_credentials", Some((&id, &secret))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(tools_list(&gw, &live, "/mcp").await.status, StatusCode::UNAUTHORIZED);
    gw.finish().await;
}

#[tokio::test]
async fn signing_key_rotation_keeps_old_tokens_valid_and_jwks_public() {
    let gw = Gw::start().await;
    let created = gw.post_json("/api/v1/clients", &json!({ "name": "ci" })).await;
    let c: Value = serde_json::from_slice(&created.body).unwrap();
    let (id, secret) = (c["client_id"].as_str().unwrap().to_owned(), c["client_secret"].as_str().unwrap().to_owned());
    let (_, body) = token(&gw, "grant_type=client_credentials", Some((&id, &secret))).await;
    let old = body["access_token"].as_str().unwrap().to_owned();
    let jwks = gw.send(get("/t/default/.well-known/jwks.json", None)).await;
    let keys: Value = serde_json::from_slice(&jwks.body).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert!(keys["keys"][0].get("d").is_none(), "no private part");
    let rotated = gw.post_json("/api/v1/identity/keys/rotate", &json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    let jwks = gw.send(get("/t/default/.well-known/jwks.json", None)).await;
    let keys: Value = serde_json::from_slice(&jwks.body).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "the old key stays for the grace period");
    assert_eq!(tools_list(&gw, &old, "/mcp").await.status, StatusCode::OK);
    let (_, body) = token(&gw, "grant_type=client_credentials", Some((&id, &secret))).await;
    let new = body["access_token"].as_str().unwrap().to_owned();
    let kid = |t: &str| moat_auth::peek(t).unwrap().kid.unwrap();
    assert_ne!(kid(&old), kid(&new));
    assert_eq!(tools_list(&gw, &new, "/mcp").await.status, StatusCode::OK);
    assert_eq!(gw.send(get("/t/nope/.well-known/jwks.json", None)).await.status, StatusCode::NOT_FOUND);
    gw.finish().await;
}

/// Serves `doc` as JSON at `/client.json` on a loopback port; returns the base URL.
async fn serve_json(doc: impl Fn(String) -> Value + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let me = base.clone();
    let doc = std::sync::Arc::new(doc);
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let (doc, me) = (doc.clone(), me.clone());
            async move { axum::Json(doc(format!("{me}/client.json"))) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn client_metadata_documents_behind_the_egress_guard() {
    let doc = |id: String| json!({ "client_id": id, "client_name": "Doc Client", "redirect_uris": [REDIRECT] });
    let base = serve_json(doc).await;
    let client_id = format!("{base}/client.json");

    // Production settings: a loopback document is never fetched.
    let gw = Gw::start().await;
    let (_, session) = logged_in(&gw, "carol", Role::Member).await;
    let cookie = format!("moat_session={session}");
    let r = gw.send(get(&authorize_url(&client_id, ""), Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.header("location").is_none());
    gw.finish().await;

    // A lab deployment that allows private URLs fetches, checks and caches it.
    let gw = Gw::with(|c| c.oauth.allow_private_urls = true).await;
    let (_, session) = logged_in(&gw, "carol", Role::Member).await;
    let cookie = format!("moat_session={session}");
    let r = gw.send(get(&authorize_url(&client_id, ""), Some(&cookie))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("Doc Client") && r.text().contains("identified by"), "{}", r.text());
    let stored = gw.store.oauth_client_for_auth(&client_id).await.unwrap().unwrap().client;
    assert_eq!(stored.source, ClientSource::Metadata);
    // A redirect URI the document does not list is refused.
    let evil = authorize_url(&client_id, "").replace(&enc(REDIRECT), &enc("https://evil.example/cb"));
    assert_eq!(gw.send(get(&evil, Some(&cookie))).await.status, StatusCode::BAD_REQUEST);
    // The tenant can refuse such clients.
    let r = gw.send(put_json(&gw, "/api/v1/identity", &json!({ "allow_metadata_clients": false }))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = gw.send(get(&authorize_url(&client_id, ""), Some(&cookie))).await;
    assert_eq!(query(&r.header("location").unwrap()).get("error").map(String::as_str), Some("access_denied"));
    gw.finish().await;

    // A document whose client_id is another URL is refused.
    let liar =
        serve_json(|_| json!({ "client_id": "https://elsewhere.example/c.json", "redirect_uris": [REDIRECT] })).await;
    let gw = Gw::with(|c| c.oauth.allow_private_urls = true).await;
    let r = gw.send(get(&authorize_url(&format!("{liar}/client.json"), ""), None)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("does not equal"), "{}", r.text());
    gw.finish().await;
}

fn put_json(gw: &Gw, path: &str, body: &Value) -> Request<Body> {
    Request::put(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {}", gw.key))
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn dynamic_registration_and_its_switches() {
    let gw = Gw::start().await;
    let register = |body: Value| {
        Request::post("/oauth/register")
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let r = gw
        .send(register(
            json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Claude" }),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let reg: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(reg.get("client_secret").is_none());
    let public_id = reg["client_id"].as_str().unwrap().to_owned();
    let r = gw.send(register(json!({ "redirect_uris": ["https://app.example/cb"] }))).await;
    let conf: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(conf["client_secret"].as_str().unwrap().starts_with("moat_cs_"));
    assert_eq!(conf["token_endpoint_auth_method"], "client_secret_basic");
    for bad in [
        json!({}),
        json!({ "redirect_uris": ["http://evil.example/cb"] }),
        json!({ "redirect_uris": [REDIRECT], "grant_types": ["client_credentials"] }),
    ] {
        let r = gw.send(register(bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // A dynamically registered client never shows up in a tenant's listing.
    assert!(!gw.send(get_bearer("/api/v1/clients", &gw.key)).await.text().contains(&public_id));

    // The tenant refuses dynamically registered clients: authorization fails,
    // and with every tenant closed, registration itself is refused.
    let (_, session) = logged_in(&gw, "dave", Role::Member).await;
    let r = gw.send(put_json(&gw, "/api/v1/identity", &json!({ "allow_registration": false }))).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = gw.send(get(&authorize_url(&public_id, ""), Some(&format!("moat_session={session}")))).await;
    assert_eq!(query(&r.header("location").unwrap()).get("error").map(String::as_str), Some("access_denied"));
    let r = gw.send(register(json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" }))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    gw.finish().await;

    // The deployment switch, and the per-address registration limit.
    let gw = Gw::with(|c| c.oauth.dynamic_registration = false).await;
    let r = gw.send(register(json!({ "redirect_uris": [REDIRECT] }))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let meta = gw.send(get("/.well-known/oauth-authorization-server", None)).await;
    assert!(!meta.text().contains("registration_endpoint"));
    gw.finish().await;
    let gw = Gw::with(|c| c.oauth.registrations_per_hour = 2).await;
    for _ in 0..2 {
        assert_eq!(gw.send(register(json!({ "redirect_uris": [REDIRECT] }))).await.status, StatusCode::CREATED);
    }
    let r = gw.send(register(json!({ "redirect_uris": [REDIRECT] }))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some());
    gw.finish().await;
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let gw = Gw::with(|c| c.oauth.failures_per_minute = 3).await;
    let created = gw.post_json("/api/v1/clients", &json!({ "name": "ci" })).await;
    let c: Value = serde_json::from_slice(&created.body).unwrap();
    let (id, secret) = (c["client_id"].as_str().unwrap().to_owned(), c["client_secret"].as_str().unwrap().to_owned());
    for _ in 0..4 {
        let (status, _) = token(&gw, "grant_type=client_credentials", Some((&id, "moat_cs_wrong"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The budget is spent: even the right secret waits.
    let resp = gw.send(form("/oauth/token", "grant_type=client_credentials", None, Some((&id, &secret)))).await;
    assert_eq!(resp.status, StatusCode::TOO_MANY_REQUESTS, "{}", resp.text());
    assert!(resp.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    // And bearer authentication from that address too.
    assert_eq!(tools_list(&gw, &gw.key, "/mcp").await.status, StatusCode::TOO_MANY_REQUESTS);
    gw.finish().await;
}

#[tokio::test]
async fn every_authorization_server_endpoint_spends_one_request_budget_per_address() {
    // A burst of 8 / 4 + 1 = 3 requests (`identity::limits`), then one per 7.5 s.
    let gw = Gw::with(|c| c.oauth.requests_per_minute = 8).await;
    // Three different endpoints, one budget.
    assert_eq!(gw.send(form("/oauth/logout", "", None, None)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(gw.send(form("/oauth/token", "grant_type=x", None, None)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.send(get("/authorize", None)).await.status, StatusCode::BAD_REQUEST);
    for path in ["/oauth/token", "/oauth/register", "/oauth/revoke", "/oauth/login", "/oauth/consent", "/token"] {
        let r = gw.send(form(path, "", None, None)).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{path}: {}", r.text());
        assert!(r.header("retry-after").is_some(), "{path}");
    }
    assert_eq!(gw.send(get("/oauth/callback", None)).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Discovery and the key set are not the authorization server's budget.
    assert_eq!(gw.send(get("/.well-known/oauth-authorization-server", None)).await.status, StatusCode::OK);
    gw.finish().await;
}
