//! Command-line interface.

use crate::{admin, config, scan, serve};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// moat — a security-first gateway for the Model Context Protocol.
#[derive(Parser, Debug)]
#[command(name = "moat", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every admin command.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of the running gateway.
    #[arg(long, env = "MOAT_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Act in this tenant (operator only, when not your own).
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (default: ./moat.toml when present, or MOAT_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (default ./moat-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Log format: text or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Initialise an empty data dir and print the owner's API key.
    Init {
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (default ./moat-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Name of the first tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Run the firewall over stdin (JSON or text) and print the findings;
    /// exit 3 when there are any.
    Scan {
        /// Which way the content travels.
        #[arg(long, default_value = "response", value_parser = ["request", "response", "description"])]
        direction: String,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Config file (its firewall policy is used).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Tenants (operator).
    Tenant {
        #[command(subcommand)]
        verb: TenantVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// Users of a tenant.
    User {
        #[command(subcommand)]
        verb: UserVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        verb: KeyVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// OAuth clients: service clients (client credentials) and public apps (code + PKCE).
    Client {
        #[command(subcommand)]
        verb: ClientVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// Identity: the identity provider for human login, registration
    /// switches, signing keys, tenant-wide token revocation.
    Identity {
        #[command(subcommand)]
        verb: IdentityVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// Upstream MCP servers.
    Server {
        #[command(subcommand)]
        verb: ServerVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        verb: AuditVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// Teams of users (they share team-scoped credentials).
    Team {
        #[command(subcommand)]
        verb: TeamVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// Upstream credentials (values are read from stdin and never printed).
    Credential {
        #[command(subcommand)]
        verb: CredentialVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// Calls held by the firewall, and changed tool descriptions, awaiting an admin.
    Approval {
        #[command(subcommand)]
        verb: ApprovalVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// The tenant's firewall overrides and detection patterns.
    Firewall {
        #[command(subcommand)]
        verb: FirewallVerb,
        #[command(flatten)]
        remote: Remote,
    },
    /// The key-encryption key (operator).
    Kek {
        #[command(subcommand)]
        verb: KekVerb,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantVerb {
    /// List tenants.
    List,
    /// Show one tenant.
    Show { tenant: String },
    /// Create a tenant.
    Create { name: String },
    /// Delete a tenant with its users, keys and servers.
    Delete { tenant: String },
    /// Rotate the tenant's data-encryption key: a new version, every
    /// credential re-encrypted under it (default: your own tenant).
    RotateKey { tenant: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum UserVerb {
    /// List users.
    List,
    /// Create a user.
    Create {
        name: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long, default_value = "member")]
        role: String,
        #[arg(long, default_value = "human")]
        kind: String,
    },
    /// Show one user.
    Show { user: String },
    /// Delete a user with its keys, memberships and own credentials.
    #[command(alias = "remove")]
    Delete { user: String },
}

#[derive(Subcommand, Debug)]
pub enum TeamVerb {
    /// List teams.
    List,
    /// Show a team and its members.
    Show { team: String },
    /// Create a team.
    Create { name: String },
    /// Delete a team with its memberships and team credentials.
    #[command(alias = "remove")]
    Delete { team: String },
    /// Add a user to a team.
    AddMember { team: String, user: String },
    /// Remove a user from a team.
    RemoveMember { team: String, user: String },
}

#[derive(Subcommand, Debug)]
pub enum CredentialVerb {
    /// Store or replace a credential; the value is read from stdin.
    Set {
        /// The upstream server (id or name).
        #[arg(long)]
        server: String,
        /// personal, team, org or service.
        #[arg(long, value_parser = ["personal", "team", "org", "service"])]
        scope: String,
        /// personal: the user (default: you).
        #[arg(long)]
        user: Option<String>,
        /// team: the team.
        #[arg(long)]
        team: Option<String>,
        /// service: the machine identity (a user of kind `service`).
        #[arg(long)]
        client: Option<String>,
        /// Send the value in this HTTP header.
        #[arg(long, value_name = "NAME", group = "how")]
        header: Option<String>,
        /// Send the value as `Authorization: Bearer <value>`.
        #[arg(long, group = "how")]
        bearer: bool,
        /// Send `user:password` from stdin as HTTP basic auth.
        #[arg(long, group = "how")]
        basic: bool,
        /// Set the value as this environment variable of a stdio server.
        #[arg(long, value_name = "NAME", group = "how")]
        env: Option<String>,
    },
    /// List credentials (metadata only).
    List {
        /// Only this server's.
        #[arg(long)]
        server: Option<String>,
        /// Only this tier.
        #[arg(long, value_parser = ["personal", "team", "org", "service"])]
        scope: Option<String>,
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
    },
    /// Show a credential's metadata.
    Show { credential: String },
    /// Delete a credential.
    #[command(alias = "remove")]
    Delete { credential: String },
}

#[derive(Subcommand, Debug)]
pub enum ApprovalVerb {
    /// List approvals, newest first (default: the pending ones).
    List {
        /// pending, approved, denied, expired or all.
        #[arg(long, default_value = "pending", value_parser = ["pending", "approved", "denied", "expired", "all"])]
        status: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one approval.
    Show { approval: String },
    /// Approve: the held call proceeds, or the changed tool is shown again.
    Approve { approval: String },
    /// Deny: the held call fails, or the changed tool stays hidden.
    Deny { approval: String },
}

#[derive(Subcommand, Debug)]
pub enum FirewallVerb {
    /// Policy overrides of the tenant, a server or a tool.
    Policy {
        #[command(subcommand)]
        verb: FirewallPolicyVerb,
    },
    /// The tenant's own detection patterns.
    Pattern {
        #[command(subcommand)]
        verb: FirewallPatternVerb,
    },
}

#[derive(Subcommand, Debug)]
pub enum FirewallPolicyVerb {
    /// List the overrides.
    List,
    /// Create or replace the override of the tenant (no --server), a server
    /// or a tool.
    Set {
        /// The server (id or name).
        #[arg(long)]
        server: Option<String>,
        /// A tool, prompt or resource of that server.
        #[arg(long, requires = "server")]
        tool: Option<String>,
        /// enforce, shadow or disabled.
        #[arg(long, value_parser = ["enforce", "shadow", "disabled"])]
        mode: Option<String>,
        /// A rule, `[CATEGORY[:RULE]][@DIRECTION]=ACTION`, e.g. `pii=block`,
        /// `secret:aws-access-key@request=block`, `@response=log`.
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
        /// Largest call arguments or result in bytes before an
        /// `oversized-payload` exfiltration finding.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        budget_bytes: Option<i64>,
    },
    /// Remove an override.
    #[command(alias = "remove")]
    Delete {
        /// The server (id or name); none for the tenant's override.
        #[arg(long)]
        server: Option<String>,
        /// The tool within that server.
        #[arg(long, requires = "server")]
        tool: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FirewallPatternVerb {
    /// List the patterns.
    List,
    /// Add a pattern (a regular expression); findings carry its name.
    Add {
        /// Unique name: the rule id of its findings.
        name: String,
        /// The regular expression.
        #[arg(long)]
        pattern: String,
        /// The category reported.
        #[arg(long, default_value = "pii",
            value_parser = ["secret", "pii", "injection", "destructive", "url", "exfiltration", "tool_abuse"])]
        category: String,
    },
    /// Remove a pattern.
    #[command(alias = "remove")]
    Delete { pattern: String },
}

/// Parses `[CATEGORY[:RULE]][@DIRECTION]=ACTION` into a policy rule object.
pub fn parse_rule(s: &str) -> Result<serde_json::Value, String> {
    let (lhs, action) =
        s.rsplit_once('=').ok_or_else(|| format!("`{s}`: expected [CATEGORY[:RULE]][@DIRECTION]=ACTION"))?;
    let (what, direction) = match lhs.split_once('@') {
        Some((w, d)) => (w, Some(d)),
        None => (lhs, None),
    };
    let (category, rule) = match what.split_once(':') {
        Some((c, r)) => (c, Some(r)),
        None => (what, None),
    };
    let mut o = serde_json::Map::new();
    if !category.is_empty() {
        o.insert("category".into(), category.into());
    }
    if let Some(r) = rule.filter(|r| !r.is_empty()) {
        o.insert("rule".into(), r.into());
    }
    if let Some(d) = direction.filter(|d| !d.is_empty()) {
        o.insert("direction".into(), d.into());
    }
    if action.is_empty() {
        return Err(format!("`{s}`: the action is missing"));
    }
    o.insert("action".into(), action.into());
    Ok(serde_json::Value::Object(o))
}

#[derive(Subcommand, Debug)]
pub enum ClientVerb {
    /// List clients (never their secrets).
    List,
    /// Show one client.
    Show { client: String },
    /// Create a client; a service client's id and secret are printed once
    /// (two lines: client_id, then client_secret).
    Create {
        /// Unique name within the tenant.
        #[arg(long)]
        name: String,
        /// `service` (client credentials) or `public` (code + PKCE).
        #[arg(long, default_value = "service", value_parser = ["service", "public"])]
        kind: String,
        /// A redirect URI of a public client (repeatable).
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// A scope the client may hold (repeatable): mcp:tools, mcp:resources,
        /// mcp:prompts; admin:read, admin:write for public clients only.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A browser origin its tokens are bound to (repeatable).
        #[arg(long = "allowed-origin", value_name = "ORIGIN")]
        allowed_origins: Vec<String>,
    },
    /// Revoke a client and every grant it holds.
    #[command(alias = "revoke")]
    Delete { client: String },
    /// Regenerate a service client's secret; prints the new one once (the
    /// only stdout line).
    #[command(alias = "regenerate")]
    Rotate { client: String },
}

#[derive(Subcommand, Debug)]
pub enum IdentityVerb {
    /// Show the tenant's identity settings.
    Show,
    /// Turn the registration switches on or off.
    Set {
        /// Users may authorize dynamically registered (RFC 7591) clients.
        #[arg(long, value_parser = ["on", "off"])]
        dynamic_registration: Option<String>,
        /// Users may authorize clients identified by a metadata-document URL.
        #[arg(long, value_parser = ["on", "off"])]
        metadata_clients: Option<String>,
    },
    /// Set the OpenID Connect provider humans log in with. The client
    /// secret, when the provider issued one, is read from stdin.
    SetIdp {
        /// The provider's issuer URL.
        #[arg(long)]
        issuer: String,
        /// moat's client id at the provider.
        #[arg(long)]
        client_id: String,
        /// Read moat's client secret at the provider from stdin.
        #[arg(long)]
        client_secret_stdin: bool,
        /// Scopes to request.
        #[arg(long, default_value = "openid email profile")]
        scopes: String,
        /// The ID-token claim that lists groups.
        #[arg(long, default_value = "groups")]
        groups_claim: String,
        /// A group whose members are admins (repeatable).
        #[arg(long = "admin-group", value_name = "GROUP")]
        admin_groups: Vec<String>,
        /// Role of everyone else: member or admin.
        #[arg(long, default_value = "member", value_parser = ["member", "admin"])]
        default_role: String,
    },
    /// Remove the identity provider (humans can no longer log in).
    RemoveIdp,
    /// End every access token, refresh token and browser session of the
    /// tenant, from their next use (API keys stay).
    RevokeAll,
    /// List the signing keys (public halves).
    Keys,
    /// Rotate the signing key (the old one verifies during the grace period).
    RotateKey,
}

#[derive(Subcommand, Debug)]
pub enum KekVerb {
    /// Re-wrap every tenant's data keys under a new key-encryption key.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum KeyVerb {
    /// List keys (never their secrets).
    List,
    /// Show one key.
    Show { key: String },
    /// Create a key; prints the secret once.
    Create {
        /// Unique name within the tenant.
        name: String,
        /// owner, admin or member.
        #[arg(long, default_value = "member")]
        role: String,
        /// human, agent, service or workflow.
        #[arg(long, default_value = "agent")]
        kind: String,
        /// The user (id or name) the key acts as.
        #[arg(long)]
        user: Option<String>,
        /// Lifetime in seconds.
        #[arg(long)]
        expires_in: Option<i64>,
    },
    /// Revoke a key; it stops working on the next request.
    #[command(alias = "delete")]
    Revoke { key: String },
    /// Regenerate a key's secret; prints the new secret once.
    #[command(alias = "regenerate")]
    Rotate { key: String },
}

#[derive(Subcommand, Debug)]
pub enum ServerVerb {
    /// List servers.
    List,
    /// Show one server.
    Show { server: String },
    /// Register an upstream server.
    #[command(alias = "create")]
    Add {
        /// Name: the tool prefix (`<name>__<tool>`).
        name: String,
        /// URL of a Streamable HTTP or SSE server (written `--url`; the
        /// gateway's own address then comes from MOAT_URL, or from a
        /// `--url` before `add`).
        #[arg(
            long = "upstream-url",
            id = "upstream_url",
            value_name = "URL",
            conflicts_with = "command",
            required_unless_present = "command"
        )]
        url: Option<String>,
        /// Transport of a URL server.
        #[arg(long, value_parser = ["streamable-http", "sse"])]
        transport: Option<String>,
        /// Program and arguments of a stdio server (the rest of the line).
        #[arg(long, num_args = 1.., allow_hyphen_values = true)]
        command: Option<Vec<String>>,
        /// Environment for a stdio server, KEY=VALUE (not for secrets).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },
    /// Remove a server.
    #[command(alias = "remove")]
    Delete { server: String },
}

#[derive(Subcommand, Debug)]
pub enum AuditVerb {
    /// List events, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only actions starting with this prefix (e.g. `auth.`).
        #[arg(long)]
        action: Option<String>,
        /// Every tenant's events (operator).
        #[arg(long)]
        all: bool,
    },
}

/// `moat scan` found something: exit code 3, no error message.
#[derive(Debug)]
pub struct FoundSomething;

impl std::fmt::Display for FoundSomething {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("findings")
    }
}

impl std::error::Error for FoundSomething {}

/// Rewrites argv so that `moat server add NAME --url URL` names the
/// upstream, as documented, while `--url` everywhere else (including before
/// `add`) is the gateway's address. Both cannot be one clap flag: the
/// gateway's `--url` is global.
pub fn normalise_args(args: Vec<String>) -> Vec<String> {
    let noun = args.iter().skip(1).position(|a| !a.starts_with('-')).map(|i| i + 1);
    let Some(noun) = noun.filter(|&i| args[i] == "server") else { return args };
    let Some(verb) = args.iter().skip(noun + 1).position(|a| a == "add" || a == "create").map(|i| i + noun + 1) else {
        return args;
    };
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            if i <= verb {
                a
            } else if a == "--url" {
                "--upstream-url".to_owned()
            } else if let Some(v) = a.strip_prefix("--url=") {
                format!("--upstream-url={v}")
            } else {
                a
            }
        })
        .collect()
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, data_dir, listen, log_format } => {
            let flags = config::Overrides { config, data_dir, listen, log_format };
            serve::serve(flags).await
        }
        Command::Init { config, data_dir, tenant } => {
            let flags = config::Overrides { config, data_dir, ..Default::default() };
            serve::init_command(flags, &tenant).await
        }
        Command::Scan { direction, format, config } => {
            scan::scan_command(config::Overrides { config, ..Default::default() }, &direction, &format)
        }
        Command::Tenant { verb, remote } => admin::tenant(&remote, verb).await,
        Command::User { verb, remote } => admin::user(&remote, verb).await,
        Command::Key { verb, remote } => admin::key(&remote, verb).await,
        Command::Server { verb, remote } => admin::server(&remote, verb).await,
        Command::Client { verb, remote } => admin::client(&remote, verb).await,
        Command::Identity { verb, remote } => admin::identity(&remote, verb).await,
        Command::Audit { verb, remote } => admin::audit(&remote, verb).await,
        Command::Team { verb, remote } => admin::team(&remote, verb).await,
        Command::Credential { verb, remote } => admin::credential(&remote, verb).await,
        Command::Kek { verb, remote } => admin::kek(&remote, verb).await,
        Command::Approval { verb, remote } => admin::approval(&remote, verb).await,
        Command::Firewall { verb, remote } => admin::firewall(&remote, verb).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firewall_rules_parse_from_the_command_line() {
        assert_eq!(parse_rule("pii=block").unwrap(), serde_json::json!({ "category": "pii", "action": "block" }));
        assert_eq!(
            parse_rule("secret:aws-access-key@request=redact").unwrap(),
            serde_json::json!({ "category": "secret", "rule": "aws-access-key", "direction": "request", "action": "redact" })
        );
        assert_eq!(
            parse_rule("@response=log").unwrap(),
            serde_json::json!({ "direction": "response", "action": "log" })
        );
        assert!(parse_rule("pii").is_err());
        assert!(parse_rule("pii=").is_err());
        let ok = Cli::try_parse_from(argv("moat firewall policy set --server s --tool t --mode shadow --rule pii=log"));
        assert!(ok.is_ok(), "{ok:?}");
        let orphan = Cli::try_parse_from(argv("moat firewall policy set --tool t"));
        assert!(orphan.is_err());
        assert!(Cli::try_parse_from(argv("moat approval approve 01ABC")).is_ok());
    }

    #[test]
    fn credential_set_takes_exactly_one_way_of_presenting() {
        let ok = Cli::try_parse_from(argv("moat credential set --server s --scope org --env TOKEN"));
        assert!(ok.is_ok());
        let both = Cli::try_parse_from(argv("moat credential set --server s --scope org --env T --bearer"));
        assert!(both.is_err());
        let bad = Cli::try_parse_from(argv("moat credential set --server s --scope everyone --bearer"));
        assert!(bad.is_err());
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn server_add_url_names_the_upstream() {
        let a = normalise_args(argv("moat server --url http://gw add srv --url http://up/mcp"));
        assert_eq!(a, argv("moat server --url http://gw add srv --upstream-url http://up/mcp"));
        let cli = Cli::try_parse_from(a).unwrap();
        match cli.command {
            Command::Server { verb: ServerVerb::Add { url, .. }, remote } => {
                assert_eq!(url.as_deref(), Some("http://up/mcp"));
                assert_eq!(remote.url, "http://gw");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(normalise_args(argv("moat key list --url http://gw")), argv("moat key list --url http://gw"));
        let a = normalise_args(argv("moat server add fs --command npx -y pkg --url=x"));
        assert_eq!(a.last().map(String::as_str), Some("--upstream-url=x"));
    }
}
