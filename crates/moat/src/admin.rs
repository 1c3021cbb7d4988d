//! The admin commands: thin clients of the running gateway's `/api/v1`.
//! Authenticated with `MOAT_API_KEY`. Secrets are printed once, as the only
//! stdout line (unless `--json`).

use crate::cli::{
    ApprovalVerb, AuditVerb, ClientVerb, CredentialVerb, FirewallPatternVerb, FirewallPolicyVerb, FirewallVerb,
    IdentityVerb, KekVerb, KeyVerb, Remote, ServerVerb, TeamVerb, TenantVerb, UserVerb,
};
use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    tenant: Option<String>,
}

impl Client {
    fn new(remote: &Remote) -> anyhow::Result<Self> {
        let key = std::env::var("MOAT_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| anyhow!("MOAT_API_KEY is not set: export the API key of an admin or owner"))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: remote.url.trim_end_matches('/').to_owned(),
            key: key.trim().to_owned(),
            tenant: remote.tenant.clone(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        query: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut q: Vec<(&str, String)> = query.to_vec();
        if let Some(t) = &self.tenant {
            q.push(("tenant", t.clone()));
        }
        let mut req = self.http.request(method, &url).bearer_auth(&self.key).query(&q);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| anyhow!("cannot reach moat at {}: {}", self.base, e.without_url()))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
        if !status.is_success() {
            let msg = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status}"));
            bail!("{msg} (HTTP {})", status.as_u16());
        }
        Ok(value)
    }
}

fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// Prints a list as a table of the given columns.
fn print_table(list: &Value, columns: &[&str]) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.iter().map(|r| columns.iter().map(|c| cell(&r[*c])).collect()).collect())
        .unwrap_or_default();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| rows.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<String>| {
        cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    println!("{}", line(columns.iter().map(|c| c.to_uppercase()).collect()));
    for r in rows {
        println!("{}", line(r));
    }
}

fn print_object(v: &Value) {
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            println!("{k}: {}", cell(val));
        }
    }
}

fn out(remote: &Remote, v: &Value, columns: Option<&[&str]>) {
    if remote.json {
        print_json(v);
    } else if let Some(cols) = columns {
        print_table(v, cols);
    } else {
        print_object(v);
    }
}

/// `moat tenant …`.
pub async fn tenant(remote: &Remote, verb: TenantVerb) -> anyhow::Result<()> {
    let c = Client { tenant: None, ..Client::new(remote)? };
    match verb {
        TenantVerb::List => {
            out(remote, &c.call(Method::GET, "/tenants", None, &[]).await?, Some(&["id", "name", "created_at"]))
        }
        TenantVerb::Show { tenant } => {
            out(remote, &c.call(Method::GET, &format!("/tenants/{}", seg(&tenant)), None, &[]).await?, None)
        }
        TenantVerb::Create { name } => {
            let v = c.call(Method::POST, "/tenants", Some(json!({ "name": name })), &[]).await?;
            if remote.json { print_json(&v) } else { println!("{}", cell(&v["id"])) }
        }
        TenantVerb::Delete { tenant } => {
            c.call(Method::DELETE, &format!("/tenants/{}", seg(&tenant)), None, &[]).await?;
        }
        TenantVerb::RotateKey { tenant } => {
            let tenant = match tenant.or_else(|| remote.tenant.clone()) {
                Some(t) => t,
                None => cell(&c.call(Method::GET, "/whoami", None, &[]).await?["tenant_id"]),
            };
            let v = c.call(Method::POST, &format!("/tenants/{}/rotate-key", seg(&tenant)), None, &[]).await?;
            out(remote, &v, None);
        }
    }
    Ok(())
}

/// `moat user …`.
pub async fn user(remote: &Remote, verb: UserVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    match verb {
        UserVerb::List => out(
            remote,
            &c.call(Method::GET, "/users", None, &[]).await?,
            Some(&["id", "name", "kind", "role", "email"]),
        ),
        UserVerb::Create { name, email, role, kind } => {
            let v = c
                .call(
                    Method::POST,
                    "/users",
                    Some(json!({ "name": name, "email": email, "role": role, "kind": kind })),
                    &[],
                )
                .await?;
            if remote.json { print_json(&v) } else { println!("{}", cell(&v["id"])) }
        }
        UserVerb::Show { user } => {
            out(remote, &c.call(Method::GET, &format!("/users/{}", seg(&user)), None, &[]).await?, None)
        }
        UserVerb::Delete { user } => {
            c.call(Method::DELETE, &format!("/users/{}", seg(&user)), None, &[]).await?;
        }
    }
    Ok(())
}

/// `moat team …`.
pub async fn team(remote: &Remote, verb: TeamVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    let members = |t: &str| format!("/teams/{}/members", seg(t));
    match verb {
        TeamVerb::List => out(
            remote,
            &c.call(Method::GET, "/teams", None, &[]).await?,
            Some(&["id", "name", "members", "created_at"]),
        ),
        TeamVerb::Show { team } => {
            let v = c.call(Method::GET, &format!("/teams/{}", seg(&team)), None, &[]).await?;
            if remote.json {
                print_json(&v);
            } else {
                print_object(&json!({ "id": v["id"], "name": v["name"], "created_at": v["created_at"] }));
                let names: Vec<String> = v["members"]
                    .as_array()
                    .map(|m| m.iter().map(|u| cell(&u["user_name"])).collect())
                    .unwrap_or_default();
                println!("members: {}", if names.is_empty() { "-".to_owned() } else { names.join(" ") });
            }
        }
        TeamVerb::Create { name } => {
            let v = c.call(Method::POST, "/teams", Some(json!({ "name": name })), &[]).await?;
            if remote.json { print_json(&v) } else { println!("{}", cell(&v["id"])) }
        }
        TeamVerb::Delete { team } => {
            c.call(Method::DELETE, &format!("/teams/{}", seg(&team)), None, &[]).await?;
        }
        TeamVerb::AddMember { team, user } => {
            c.call(Method::PUT, &format!("{}/{}", members(&team), seg(&user)), None, &[]).await?;
        }
        TeamVerb::RemoveMember { team, user } => {
            c.call(Method::DELETE, &format!("{}/{}", members(&team), seg(&user)), None, &[]).await?;
        }
    }
    Ok(())
}

/// Reads a credential value from stdin: never from argv, where `ps` and
/// shell history would see it. One trailing line break is dropped; a
/// terminal gets a prompt without echo.
fn read_value() -> anyhow::Result<secrecy::SecretString> {
    use std::io::{IsTerminal as _, Read as _};
    let mut value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("credential value (not echoed): ").context("reading the value")?
    } else {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf).context("reading the value from stdin (it must be UTF-8 text)")?;
        buf
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        bail!("no value on stdin: pipe the credential in, e.g. `printf %s \"$TOKEN\" | moat credential set …`");
    }
    Ok(secrecy::SecretString::from(value))
}

const CREDENTIAL_COLUMNS: &[&str] =
    &["id", "server_name", "tier", "owner", "kind", "target", "key_version", "created_at", "last_used_at"];

/// Adds an `owner` column (the user's or team's name) and readable times.
fn humanise_credential(row: &mut Value) {
    let owner = match row["tier"].as_str() {
        Some("team") => row["team_name"].clone(),
        Some("org") => json!("(organisation)"),
        _ => row["user_name"].clone(),
    };
    row["owner"] = owner;
    for k in ["created_at", "updated_at", "last_used_at"] {
        if let Some(ms) = row[k].as_i64() {
            row[k] = Value::String(rfc3339(ms));
        }
    }
}

/// `moat credential …`.
pub async fn credential(remote: &Remote, verb: CredentialVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    match verb {
        CredentialVerb::Set { server, scope, user, team, client, header, bearer, basic, env } => {
            let (kind, name) = match (header, bearer, basic, env) {
                (Some(h), _, _, _) => ("header", Some(h)),
                (_, true, _, _) => ("bearer", None),
                (_, _, true, _) => ("basic", None),
                (_, _, _, Some(e)) => ("env", Some(e)),
                _ => bail!("say how the credential is presented: --header NAME, --bearer, --basic or --env NAME"),
            };
            let value = read_value()?;
            let body = json!({
                "server": server, "scope": scope, "user": user, "team": team, "client": client,
                "kind": kind, "name": name, "value": secrecy::ExposeSecret::expose_secret(&value),
            });
            let mut v = c.call(Method::POST, "/credentials", Some(body), &[]).await?;
            if remote.json {
                print_json(&v);
            } else {
                humanise_credential(&mut v);
                println!("{}", cell(&v["id"]));
            }
        }
        CredentialVerb::List { server, scope, user, team } => {
            let q: Vec<(&str, String)> = [("server", server), ("scope", scope), ("user", user), ("team", team)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            let mut v = c.call(Method::GET, "/credentials", None, &q).await?;
            if !remote.json
                && let Some(rows) = v.as_array_mut()
            {
                rows.iter_mut().for_each(humanise_credential);
            }
            out(remote, &v, Some(CREDENTIAL_COLUMNS));
        }
        CredentialVerb::Show { credential } => {
            let mut v = c.call(Method::GET, &format!("/credentials/{}", seg(&credential)), None, &[]).await?;
            if !remote.json {
                humanise_credential(&mut v);
            }
            out(remote, &v, None);
        }
        CredentialVerb::Delete { credential } => {
            c.call(Method::DELETE, &format!("/credentials/{}", seg(&credential)), None, &[]).await?;
        }
    }
    Ok(())
}

/// `moat kek …`.
pub async fn kek(remote: &Remote, verb: KekVerb) -> anyhow::Result<()> {
    let c = Client { tenant: None, ..Client::new(remote)? };
    match verb {
        KekVerb::Rotate => out(remote, &c.call(Method::POST, "/kek/rotate", None, &[]).await?, None),
    }
    Ok(())
}

fn print_secret(remote: &Remote, v: &Value) -> anyhow::Result<()> {
    if remote.json {
        print_json(v);
        return Ok(());
    }
    let key = v["key"].as_str().ok_or_else(|| anyhow!("the server returned no key"))?;
    println!("{key}");
    Ok(())
}

/// `moat key …`.
pub async fn key(remote: &Remote, verb: KeyVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    match verb {
        KeyVerb::List => out(
            remote,
            &c.call(Method::GET, "/keys", None, &[]).await?,
            Some(&["id", "name", "role", "kind", "revoked", "last_used_at", "expires_at"]),
        ),
        KeyVerb::Show { key } => {
            out(remote, &c.call(Method::GET, &format!("/keys/{}", seg(&key)), None, &[]).await?, None)
        }
        KeyVerb::Create { name, role, kind, user, expires_in } => {
            let body = json!({ "name": name, "role": role, "kind": kind, "user": user, "expires_in": expires_in });
            print_secret(remote, &c.call(Method::POST, "/keys", Some(body), &[]).await?)?;
        }
        KeyVerb::Revoke { key } => {
            c.call(Method::DELETE, &format!("/keys/{}", seg(&key)), None, &[]).await?;
        }
        KeyVerb::Rotate { key } => {
            print_secret(remote, &c.call(Method::POST, &format!("/keys/{}/rotate", seg(&key)), None, &[]).await?)?;
        }
    }
    Ok(())
}

/// `moat client …`.
pub async fn client(remote: &Remote, verb: ClientVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    let columns: &[&str] = &["id", "name", "kind", "scopes", "redirect_uris", "created_at"];
    match verb {
        ClientVerb::List => out(remote, &c.call(Method::GET, "/clients", None, &[]).await?, Some(columns)),
        ClientVerb::Show { client } => {
            out(remote, &c.call(Method::GET, &format!("/clients/{}", seg(&client)), None, &[]).await?, None)
        }
        ClientVerb::Create { name, kind, redirect_uris, scopes, allowed_origins } => {
            let body = json!({
                "name": name, "kind": kind, "redirect_uris": redirect_uris,
                "scopes": scopes, "allowed_origins": allowed_origins,
            });
            let v = c.call(Method::POST, "/clients", Some(body), &[]).await?;
            print_client_secret(remote, &v)?;
        }
        ClientVerb::Delete { client } => {
            c.call(Method::DELETE, &format!("/clients/{}", seg(&client)), None, &[]).await?;
        }
        ClientVerb::Rotate { client } => {
            let v = c.call(Method::POST, &format!("/clients/{}/rotate", seg(&client)), None, &[]).await?;
            if remote.json {
                print_json(&v);
            } else {
                let secret = v["client_secret"].as_str().ok_or_else(|| anyhow!("the server returned no secret"))?;
                println!("{secret}");
            }
        }
    }
    Ok(())
}

/// Prints a new client's id and, for a service client, its secret: one per
/// line (or the JSON answer with `--json`).
fn print_client_secret(remote: &Remote, v: &Value) -> anyhow::Result<()> {
    if remote.json {
        print_json(v);
        return Ok(());
    }
    let id = v["client_id"].as_str().ok_or_else(|| anyhow!("the server returned no client id"))?;
    println!("{id}");
    if let Some(secret) = v["client_secret"].as_str() {
        println!("{secret}");
    }
    Ok(())
}

/// `moat identity …`.
pub async fn identity(remote: &Remote, verb: IdentityVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    let on = |v: Option<String>| v.map(|v| v == "on");
    match verb {
        IdentityVerb::Show => out(remote, &c.call(Method::GET, "/identity", None, &[]).await?, None),
        IdentityVerb::Set { dynamic_registration, metadata_clients } => {
            let body = json!({
                "allow_registration": on(dynamic_registration),
                "allow_metadata_clients": on(metadata_clients),
            });
            let mut body = body;
            if let Some(o) = body.as_object_mut() {
                o.retain(|_, v| !v.is_null());
            }
            out(remote, &c.call(Method::PUT, "/identity", Some(body), &[]).await?, None);
        }
        IdentityVerb::SetIdp {
            issuer,
            client_id,
            client_secret_stdin,
            scopes,
            groups_claim,
            admin_groups,
            default_role,
        } => {
            let secret = if client_secret_stdin { Some(read_value()?) } else { None };
            let role_map: serde_json::Map<String, Value> =
                admin_groups.into_iter().map(|g| (g, Value::String("admin".into()))).collect();
            let mut idp = json!({
                "issuer": issuer, "client_id": client_id, "scopes": scopes,
                "groups_claim": groups_claim, "role_map": role_map, "default_role": default_role,
            });
            if let (Some(s), Some(o)) = (&secret, idp.as_object_mut()) {
                use secrecy::ExposeSecret as _;
                o.insert("client_secret".into(), Value::String(s.expose_secret().to_owned()));
            }
            out(remote, &c.call(Method::PUT, "/identity", Some(json!({ "idp": idp })), &[]).await?, None);
        }
        IdentityVerb::RemoveIdp => {
            out(remote, &c.call(Method::PUT, "/identity", Some(json!({ "idp": null })), &[]).await?, None);
        }
        IdentityVerb::RevokeAll => out(remote, &c.call(Method::POST, "/identity/revoke", None, &[]).await?, None),
        IdentityVerb::Keys => out(
            remote,
            &c.call(Method::GET, "/identity/keys", None, &[]).await?,
            Some(&["kid", "alg", "created_at", "retired_at"]),
        ),
        IdentityVerb::RotateKey => out(remote, &c.call(Method::POST, "/identity/keys/rotate", None, &[]).await?, None),
    }
    Ok(())
}

/// `moat server …`.
pub async fn server(remote: &Remote, verb: ServerVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    match verb {
        ServerVerb::List => out(
            remote,
            &c.call(Method::GET, "/servers", None, &[]).await?,
            Some(&["id", "name", "transport", "url", "command", "source", "enabled"]),
        ),
        ServerVerb::Show { server } => {
            out(remote, &c.call(Method::GET, &format!("/servers/{}", seg(&server)), None, &[]).await?, None)
        }
        ServerVerb::Add { name, url, transport, command, env } => {
            let mut env_map = serde_json::Map::new();
            for pair in env {
                let (k, v) = pair.split_once('=').ok_or_else(|| anyhow!("--env expects KEY=VALUE, got `{pair}`"))?;
                env_map.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            let transport = match (&url, &transport) {
                (Some(_), Some(t)) => t.clone(),
                (Some(_), None) => "streamable-http".into(),
                _ => "stdio".into(),
            };
            let body = json!({ "name": name, "transport": transport, "url": url, "command": command, "env": env_map });
            let v = c.call(Method::POST, "/servers", Some(body), &[]).await?;
            if remote.json { print_json(&v) } else { println!("{}", cell(&v["id"])) }
        }
        ServerVerb::Delete { server } => {
            c.call(Method::DELETE, &format!("/servers/{}", seg(&server)), None, &[]).await?;
        }
    }
    Ok(())
}

/// `moat audit …`.
pub async fn audit(remote: &Remote, verb: AuditVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    match verb {
        AuditVerb::List { limit, action, all } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(a) = action {
                q.push(("action", a));
            }
            if all {
                q.push(("scope", "all".into()));
            }
            let mut v = c.call(Method::GET, "/audit", None, &q).await?;
            if !remote.json
                && let Some(rows) = v.as_array_mut()
            {
                for row in rows {
                    if let Some(ms) = row["at"].as_i64() {
                        row["at"] = Value::String(rfc3339(ms));
                    }
                }
            }
            out(
                remote,
                &v,
                Some(&["at", "action", "result", "actor_kind", "actor_id", "resource", "latency_ms", "source_addr"]),
            );
        }
    }
    Ok(())
}

/// Times of approval rows as RFC 3339 for people.
fn humanise_times(remote: &Remote, v: &mut Value, keys: &[&str]) {
    if remote.json {
        return;
    }
    let mut fix = |row: &mut Value| {
        for k in keys {
            if let Some(ms) = row[*k].as_i64() {
                row[*k] = Value::String(rfc3339(ms));
            }
        }
    };
    match v {
        Value::Array(rows) => rows.iter_mut().for_each(&mut fix),
        row @ Value::Object(_) => fix(row),
        _ => {}
    }
}

const APPROVAL_TIMES: &[&str] = &["created_at", "expires_at", "decided_at"];

/// `moat approval …`.
pub async fn approval(remote: &Remote, verb: ApprovalVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    let (mut v, columns): (Value, Option<&[&str]>) = match verb {
        ApprovalVerb::List { status, limit } => {
            let q = [("status", status), ("limit", limit.to_string())];
            let v = c.call(Method::GET, "/approvals", None, &q).await?;
            (v, Some(&["id", "status", "kind", "server_name", "target", "requested_by", "created_at", "expires_at"]))
        }
        ApprovalVerb::Show { approval } => {
            (c.call(Method::GET, &format!("/approvals/{}", seg(&approval)), None, &[]).await?, None)
        }
        ApprovalVerb::Approve { approval } => {
            (c.call(Method::POST, &format!("/approvals/{}/approve", seg(&approval)), None, &[]).await?, None)
        }
        ApprovalVerb::Deny { approval } => {
            (c.call(Method::POST, &format!("/approvals/{}/deny", seg(&approval)), None, &[]).await?, None)
        }
    };
    humanise_times(remote, &mut v, APPROVAL_TIMES);
    out(remote, &v, columns);
    Ok(())
}

/// `moat firewall policy|pattern …`.
pub async fn firewall(remote: &Remote, verb: FirewallVerb) -> anyhow::Result<()> {
    let c = Client::new(remote)?;
    const POLICY_COLUMNS: &[&str] = &["server", "tool", "mode", "rules", "budget_bytes", "updated_at"];
    match verb {
        FirewallVerb::Policy { verb: FirewallPolicyVerb::List } => {
            let mut v = c.call(Method::GET, "/firewall/policies", None, &[]).await?;
            humanise_times(remote, &mut v, &["updated_at"]);
            out(remote, &v, Some(POLICY_COLUMNS));
        }
        FirewallVerb::Policy { verb: FirewallPolicyVerb::Set { server, tool, mode, rules, budget_bytes } } => {
            let rules = rules
                .iter()
                .map(|r| crate::cli::parse_rule(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!(e))?;
            let body =
                json!({ "server": server, "tool": tool, "mode": mode, "rules": rules, "budget_bytes": budget_bytes });
            let mut v = c.call(Method::PUT, "/firewall/policies", Some(body), &[]).await?;
            humanise_times(remote, &mut v, &["updated_at"]);
            out(remote, &v, Some(POLICY_COLUMNS));
        }
        FirewallVerb::Policy { verb: FirewallPolicyVerb::Delete { server, tool } } => {
            let mut q = Vec::new();
            if let Some(s) = server {
                q.push(("server", s));
            }
            if let Some(t) = tool {
                q.push(("tool", t));
            }
            c.call(Method::DELETE, "/firewall/policies", None, &q).await?;
        }
        FirewallVerb::Pattern { verb: FirewallPatternVerb::List } => {
            let mut v = c.call(Method::GET, "/firewall/patterns", None, &[]).await?;
            humanise_times(remote, &mut v, &["created_at"]);
            out(remote, &v, Some(&["id", "name", "category", "pattern", "created_at"]));
        }
        FirewallVerb::Pattern { verb: FirewallPatternVerb::Add { name, pattern, category } } => {
            let body = json!({ "name": name, "pattern": pattern, "category": category });
            let v = c.call(Method::POST, "/firewall/patterns", Some(body), &[]).await?;
            if remote.json { print_json(&v) } else { println!("{}", cell(&v["id"])) }
        }
        FirewallVerb::Pattern { verb: FirewallPatternVerb::Delete { pattern } } => {
            c.call(Method::DELETE, &format!("/firewall/patterns/{}", seg(&pattern)), None, &[]).await?;
        }
    }
    Ok(())
}

/// Unix milliseconds as RFC 3339 UTC, e.g. `2026-11-23T09:12:35.361Z`
/// (days-to-civil conversion after H. Hinnant).
fn rfc3339(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_unix_millis_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_425_155_361), "2026-11-23T09:12:35.361Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }
}
