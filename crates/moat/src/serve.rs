//! `moat init` and `moat serve`.

use crate::config::KeyProviderConfig;
use crate::config::{self, Config, LogFormat, Overrides};
use anyhow::{Context, bail};
use moat_core::{PrincipalKind, Role};
use moat_gateway::audit::AuditSink;
use moat_gateway::authn::Authenticator;
use moat_gateway::credentials::{Vault, VaultOptions};
use moat_gateway::guard::OriginGuard;
use moat_gateway::mcp::session::SessionStore;
use moat_gateway::upstreams::UpstreamPool;
use moat_gateway::{AppState, GatewayConfig};
use moat_store::{NewApiKey, NewUser, ServerSource, Store};
use moat_vault::{KeyProvider, LocalKek, LocalProvider};
use secrecy::{ExposeSecret, SecretString};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load(flags: &Overrides) -> anyhow::Result<Config> {
    Ok(config::load(flags, &env_var)?)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// True when the database already holds a tenant.
async fn initialised(store: &Store) -> anyhow::Result<bool> {
    Ok(!store.list_tenants().await.context("reading tenants")?.is_empty())
}

fn prepare_data_dir(cfg: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let _ = std::fs::set_permissions(&cfg.data_dir, std::fs::Permissions::from_mode(0o700));
    Ok(())
}

/// Creates the first tenant, its owner user and the operator's key.
async fn bootstrap(store: &Store, tenant_name: &str) -> anyhow::Result<SecretString> {
    let tenant = store.create_tenant(tenant_name).await.with_context(|| format!("creating tenant `{tenant_name}`"))?;
    let user = store
        .create_user(
            &tenant.id,
            NewUser { name: "owner".into(), email: None, kind: PrincipalKind::Human, role: Role::Owner },
        )
        .await
        .context("creating the owner user")?;
    let key = tokio::task::spawn_blocking(moat_auth::generate_key)
        .await
        .context("generating the owner key")?
        .context("generating the owner key")?;
    store
        .insert_api_key(
            &tenant.id,
            NewApiKey {
                user_id: user.id,
                name: "owner".into(),
                public_id: key.public_id.clone(),
                secret_hash: key.secret_hash.clone(),
                role: Role::Owner,
                kind: PrincipalKind::Human,
                operator: true,
                expires_at: None,
            },
        )
        .await
        .context("storing the owner key")?;
    let mut ev = moat_store::AuditEvent::new("system", "tenant.create", moat_store::AuditResult::Ok);
    ev.tenant_id = Some(tenant.id.clone());
    ev.resource = Some(format!("tenant:{}", tenant.id));
    ev.metadata = serde_json::json!({ "name": tenant.name, "by": "init" });
    let mut key_ev = moat_store::AuditEvent::new("system", "key.create", moat_store::AuditResult::Ok);
    key_ev.tenant_id = Some(tenant.id);
    key_ev.metadata = serde_json::json!({ "name": "owner", "role": "owner", "operator": true });
    store.append_audit(&[ev, key_ev]).await.context("recording the audit trail")?;
    Ok(key.token)
}

/// `moat init`.
pub async fn init_command(flags: Overrides, tenant: &str) -> anyhow::Result<()> {
    moat_core::validate_name(tenant).map_err(|e| anyhow::anyhow!("tenant name `{tenant}`: {e}"))?;
    let cfg = load(&flags)?;
    prepare_data_dir(&cfg)?;
    let local = matches!(cfg.key_provider, KeyProviderConfig::Local);
    if local && LocalKek::path_in(&cfg.data_dir).exists() {
        bail!("{} is already initialised (its key file exists); refusing to overwrite it", cfg.data_dir.display());
    }
    let store = Store::connect(&cfg.database_url).await.context("opening the database")?;
    if initialised(&store).await? {
        bail!("the database of {} is already initialised; refusing to initialise it again", cfg.data_dir.display());
    }
    if local {
        LocalKek::create(&cfg.data_dir).context("creating the key-encryption key")?;
    }
    let token = bootstrap(&store, tenant).await?;
    store.close().await;
    println!("{}", token.expose_secret());
    Ok(())
}

/// Applies `[[servers]]`: upserts each, and removes config-sourced servers
/// that the file no longer lists.
async fn sync_config_servers(store: &Store, cfg: &Config) -> anyhow::Result<()> {
    for s in &cfg.servers {
        let Some(tenant) = store.tenant_by_name(&s.tenant).await? else {
            bail!(
                "{}: server `{}` names tenant `{}`, which does not exist (create it with `moat tenant create {}`)",
                cfg.file.as_ref().map_or_else(|| "config".into(), |p| p.display().to_string()),
                s.server.name,
                s.tenant,
                s.tenant
            );
        };
        store
            .upsert_config_server(&tenant.id, s.server.clone())
            .await
            .with_context(|| format!("registering server `{}`", s.server.name))?;
    }
    for record in store.list_all_servers().await? {
        if record.source != ServerSource::Config {
            continue;
        }
        let listed = cfg.servers.iter().any(|s| s.server.name == record.name)
            && store
                .tenant(&record.tenant_id)
                .await?
                .is_some_and(|t| cfg.servers.iter().any(|s| s.server.name == record.name && s.tenant == t.name));
        if !listed {
            store.delete_server(&record.tenant_id, &record.id).await?;
            tracing::info!(server = %record.name, "removed a server no longer in the config file");
        }
    }
    Ok(())
}

/// The configured key provider. A remote one is not contacted here: `/readyz`
/// reports whether it answers, and calls that need it fail closed until it does.
async fn key_provider(cfg: &Config) -> anyhow::Result<Arc<dyn KeyProvider>> {
    Ok(match &cfg.key_provider {
        KeyProviderConfig::Local => {
            Arc::new(LocalProvider::open(&cfg.data_dir).context("loading the key-encryption key")?)
        }
        KeyProviderConfig::AwsKms { key_id, region, endpoint } => {
            #[cfg(feature = "aws-kms")]
            {
                let c = moat_vault::AwsKmsConfig {
                    key_id: key_id.clone(),
                    region: region.clone(),
                    endpoint_url: endpoint.clone(),
                };
                Arc::new(moat_vault::AwsKmsProvider::new(c).await.context("configuring the aws-kms key provider")?)
            }
            #[cfg(not(feature = "aws-kms"))]
            {
                let _ = (key_id, region, endpoint);
                bail!("this build of moat has no aws-kms support (cargo feature `aws-kms`)")
            }
        }
        KeyProviderConfig::VaultTransit { addr, key, mount, namespace, token } => {
            let c = moat_vault::VaultTransitConfig {
                addr: addr.clone(),
                token: token.clone(),
                key: key.clone(),
                mount: mount.clone(),
                namespace: namespace.clone(),
            };
            Arc::new(moat_vault::VaultTransitProvider::new(c).context("configuring the vault-transit key provider")?)
        }
    })
}

/// `moat serve`.
pub async fn serve(flags: Overrides) -> anyhow::Result<()> {
    let cfg = load(&flags)?;
    init_tracing(cfg.log_format);
    prepare_data_dir(&cfg)?;
    let store = Store::connect(&cfg.database_url).await.context("opening the database")?;
    let fresh = !initialised(&store).await?;
    if fresh && matches!(cfg.key_provider, KeyProviderConfig::Local) {
        LocalKek::load_or_create(&cfg.data_dir).context("creating the key-encryption key")?;
    }
    let provider = key_provider(&cfg).await?;
    if fresh {
        let token = bootstrap(&store, "default").await?;
        eprintln!("moat: initialised {}; the owner API key (shown once):", cfg.data_dir.display());
        eprintln!("{}", token.expose_secret());
    }
    sync_config_servers(&store, &cfg).await?;

    let mut gw = GatewayConfig::new(cfg.listen);
    gw.public_url = cfg.public_url.clone();
    gw.allowed_origins = cfg.allowed_origins.clone();
    gw.allowed_hosts = cfg.allowed_hosts.clone();
    gw.max_body_bytes = cfg.max_body_bytes;
    gw.call_timeout = cfg.call_timeout;
    gw.upstream_max_concurrency = cfg.upstream_max_concurrency;
    gw.list_cache_ttl = cfg.list_cache_ttl;
    gw.session_idle_timeout = cfg.session_idle_timeout;
    gw.key_cache_ttl = cfg.key_cache_ttl;
    gw.oauth = cfg.oauth.clone();

    let (audit, audit_writer) = AuditSink::start(store.clone());
    let identity = Arc::new(
        moat_gateway::identity::Identity::new(store.clone(), &gw).context("starting the authorization server")?,
    );
    let auth = Authenticator::new(store.clone(), audit.clone(), gw.key_cache_ttl, identity.clone())
        .context("starting authentication")?;
    let pool = UpstreamPool::new(&gw);
    let firewall = Arc::new(
        moat_gateway::firewall::Firewall::new(
            moat_gateway::firewall::FirewallOptions {
                policy: cfg.firewall_policy.clone(),
                approval_timeout: cfg.approval_timeout,
                max_description_bytes: cfg.max_description_bytes,
                payload_budget: cfg.payload_budget,
                changed_tools: if cfg.hide_changed_tools {
                    moat_gateway::firewall::ChangedTools::Hide
                } else {
                    moat_gateway::firewall::ChangedTools::Flag
                },
            },
            store.clone(),
            audit.clone(),
        )
        .context("starting the firewall")?,
    );
    pool.set_filter(firewall.clone());
    for record in store.list_all_servers().await? {
        let name = record.name.clone();
        match pool.install(record) {
            Ok(entry) => {
                let boot = cfg.servers.iter().any(|s| s.start_at_boot && s.server.name == name);
                if boot {
                    tokio::spawn(async move {
                        if let Err(e) = entry.base().primary().connect().await {
                            tracing::warn!(upstream = %name, error = %e, "upstream did not start at boot");
                        }
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "server cannot be started"),
        }
    }
    let _ = moat_gateway::telemetry::metrics_handle();
    let shutdown = CancellationToken::new();
    let state = Arc::new(AppState {
        guard: OriginGuard::new(&gw),
        sessions: SessionStore::new(gw.session_idle_timeout, gw.max_sessions),
        parking: Default::default(),
        cfg: gw.clone(),
        store: store.clone(),
        auth,
        pool,
        audit: audit.clone(),
        vault: Vault::new(
            provider,
            store.clone(),
            VaultOptions {
                credential_cache_ttl: cfg.credential_cache_ttl,
                rotation_batch: cfg.rotation_batch,
                rotation_pause: cfg.rotation_pause,
                ..VaultOptions::default()
            },
        ),
        firewall,
        identity,
        shutdown: shutdown.clone(),
    });
    // A key rotation cut short (a crash, a kill) is finished now, in the
    // background: reads work meanwhile, since each row names its key version.
    let resumer = state.clone();
    tokio::spawn(async move {
        match resumer.vault.resume_rotations().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(tenants = n, "finished interrupted key rotations"),
            Err(e) => {
                tracing::error!(error = %e, "could not finish an interrupted key rotation; run `moat tenant rotate-key`")
            }
        }
    });
    moat_gateway::mcp::notify::spawn_fanout(state.clone());
    let sweeper = state.clone();
    let idle_instances = cfg.instance_idle_timeout;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            sweeper.sessions.sweep();
            sweeper.parking.sweep();
            sweeper.identity.limits.housekeeping();
            if let Err(e) = sweeper.store.purge_expired_oauth(moat_core::now_ms()).await {
                tracing::warn!(error = %e, "could not purge expired authorization state");
            }
            match sweeper.store.expire_approvals_cross_tenant(moat_core::now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "approvals expired unanswered"),
                Err(e) => tracing::warn!(error = %e, "cannot expire approvals"),
            }
            let evicted = sweeper.pool.evict_idle(idle_instances);
            if evicted > 0 {
                tracing::info!(evicted, "stopped idle upstream instances holding credentials");
            }
        }
    });

    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    tracing::info!(
        listen = %cfg.listen,
        data_dir = %cfg.data_dir.display(),
        key_provider = %cfg.vault_provider,
        credential_cache_ttl_ms = cfg.credential_cache_ttl.as_millis(),
        firewall_mode = %cfg.firewall_mode,
        firewall_rules = cfg.firewall_policy.rules.len(),
        approval_timeout_s = cfg.approval_timeout.as_secs(),
        max_description_bytes = cfg.max_description_bytes,
        redis = cfg.redis_url.is_some(),
        "moat is serving"
    );
    let app = moat_gateway::router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let signal_state = state.clone();
    let graceful = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        signal_state.shutdown.cancel();
        signal_state.sessions.close_all();
    };
    // No Nagle delay: an SSE answer is several small writes, and waiting for
    // the client's delayed ACK between them would cost ~40 ms per call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(graceful).await.context("serving HTTP")?;
    state.pool.shutdown_all().await;
    drop(audit);
    tokio::time::timeout(Duration::from_secs(10), audit_writer.finish()).await.ok();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
