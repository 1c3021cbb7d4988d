//! `moat-bench`: MCP load against moat and its upstream (see the crate docs).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand};

use moat_bench::client::{Endpoint, Era};
use moat_bench::load::{self, LoadConfig, Target, Watched};
use moat_bench::orchestrate::{self, RunOptions, Scenario};
use moat_bench::report::{Machine, Report};
use moat_bench::sessions::{self, SessionsOptions};

/// Reproducible MCP load for moat: tools/call over Streamable HTTP.
#[derive(Parser, Debug)]
#[command(name = "moat-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Drive running MCP endpoints (one or more, measured in the same run).
    Load(LoadArgs),
    /// Start bench-upstream and a throw-away moat, and measure the upstream
    /// directly and through moat.
    Run(RunArgs),
    /// Start a throw-away moat and measure its memory: idle (no upstream,
    /// several starts) and holding many idle legacy MCP sessions.
    Sessions(SessionsArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Concurrent clients (sessions, each with its own connection) per target.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Total calls per second per target (open loop); 0 runs closed loop
    /// (maximum throughput).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Measured seconds per target.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Unmeasured seconds per target before it is measured.
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Split the measured time into this many segments, interleaved across
    /// targets (A B A B ...), so that background noise hits every target alike.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Bytes of text each echo call sends and expects back.
    #[arg(long, default_value_t = 64)]
    text_bytes: usize,
    /// Protocol era of the client sessions.
    #[arg(long, value_enum, default_value_t = Era::Legacy)]
    era: Era,
    /// Per-request timeout, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Send `Accept: application/json` only (the spec wants clients to
    /// accept `text/event-stream` too): a server that would stream a
    /// tools/call answer may then send plain JSON. A diagnostic.
    #[arg(long)]
    accept_json_only: bool,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// A target without authentication: NAME=URL (e.g. direct=http://127.0.0.1:9000/mcp).
    #[arg(long = "target", value_name = "NAME=URL")]
    targets: Vec<String>,
    /// A target that gets `Authorization: Bearer $MOAT_API_KEY`: NAME=URL
    /// (e.g. moat=http://127.0.0.1:8080/mcp/bench).
    #[arg(long = "auth-target", value_name = "NAME=URL")]
    auth_targets: Vec<String>,
    /// The API key for --auth-target.
    #[arg(long, env = "MOAT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The target the others are compared with (default: the first).
    #[arg(long)]
    baseline: Option<String>,
    /// A process whose CPU time is attributed to each target: NAME=PID.
    #[arg(long = "watch-pid", value_name = "NAME=PID")]
    watch: Vec<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// The moat binary (default: beside this executable).
    #[arg(long)]
    moat: Option<PathBuf>,
    /// The bench-upstream binary (default: beside this executable).
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// The bench-proxy binary (default: beside this executable).
    #[arg(long)]
    proxy: Option<PathBuf>,
    /// Pin moat (and bench-proxy) to CPU 1, and bench-upstream and the load generator to CPU 0 (taskset).
    #[arg(long)]
    pin: bool,
    /// Targets, in order (`proxy`: a bare pass-through proxy made of moat's parts, the floor under moat's cost).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "direct,proxy,moat-fw-off,moat,moat-all")]
    scenarios: Vec<Scenario>,
    /// Worker threads of bench-upstream.
    #[arg(long)]
    upstream_threads: Option<usize>,
    /// Start bench-upstream with --modern (moat then speaks 2026-07-28 to it).
    #[arg(long)]
    upstream_modern: bool,
    /// TOML appended to the generated moat.toml, e.g. `[auth]` /
    /// `key_cache_ttl_s = 3600` (tuning experiments).
    #[arg(long, value_name = "FILE")]
    moat_config: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SessionsArgs {
    /// Legacy (2025-11-25) sessions to open and hold; 0 measures only the
    /// idle memory.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Keep-alive client connections the sessions are opened over.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds to wait after the last session is open before reading memory.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Starts of an upstream-less moat for the idle figure (median); 0 skips it.
    #[arg(long, default_value_t = 7)]
    idle_runs: usize,
    /// Per-request timeout, milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// The moat binary (default: beside this executable).
    #[arg(long)]
    moat: Option<PathBuf>,
    /// The bench-upstream binary (default: beside this executable).
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// TOML appended to the generated moat.toml (tuning experiments).
    #[arg(long, value_name = "FILE")]
    moat_config: Option<PathBuf>,
    /// An environment variable for `moat serve`, e.g. MALLOC_ARENA_MAX=2
    /// (allocator experiments); repeatable.
    #[arg(long = "moat-env", value_name = "NAME=VALUE")]
    moat_env: Vec<String>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
}

impl Common {
    fn load_config(&self) -> anyhow::Result<LoadConfig> {
        let secs = |v: f64, what: &str| {
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(anyhow!("--{what} must be a non-negative number of seconds"))
            }
        };
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            bail!("--rate must be a non-negative number");
        }
        Ok(LoadConfig {
            clients: self.clients,
            rate: (self.rate > 0.0).then_some(self.rate),
            duration: secs(self.duration, "duration")?,
            warmup: secs(self.warmup, "warmup")?,
            rounds: self.rounds,
            text: echo_text(self.text_bytes),
            era: self.era,
            timeout: Duration::from_millis(self.timeout_ms),
            accept_sse: !self.accept_json_only,
        })
    }

    fn emit(&self, report: &Report) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(report)?;
        if let Some(path) = &self.json_out {
            std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
        }
        if self.json {
            println!("{json}");
        } else {
            print!("{}", report.to_table());
        }
        Ok(())
    }
}

/// Plain ASCII prose of `n` bytes: nothing a firewall should flag.
fn echo_text(n: usize) -> String {
    const WORDS: &str = "the quick brown fox jumps over the lazy dog and keeps running along the river bank ";
    WORDS.chars().cycle().take(n).collect()
}

fn split_pair(s: &str) -> anyhow::Result<(&str, &str)> {
    s.split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| anyhow!("expected NAME=VALUE, got {s:?}"))
}

async fn load_cmd(args: LoadArgs) -> anyhow::Result<()> {
    let cfg = args.common.load_config()?;
    let mut targets = Vec::new();
    for spec in &args.targets {
        let (name, url) = split_pair(spec)?;
        targets.push(Target { name: name.into(), endpoint: Endpoint { url: url.into(), bearer: None } });
    }
    for spec in &args.auth_targets {
        let (name, url) = split_pair(spec)?;
        let key = args.api_key.clone().ok_or_else(|| anyhow!("--auth-target needs MOAT_API_KEY (or --api-key)"))?;
        targets.push(Target { name: name.into(), endpoint: Endpoint { url: url.into(), bearer: Some(key) } });
    }
    if targets.is_empty() {
        bail!("no target: give --target NAME=URL and/or --auth-target NAME=URL");
    }
    let mut watched = Vec::new();
    for spec in &args.watch {
        let (name, pid) = split_pair(spec)?;
        watched.push(Watched { name: name.into(), pid: pid.parse().with_context(|| format!("bad pid in {spec:?}"))? });
    }
    let machine = Machine::now();
    let results = load::run(&cfg, &targets, &watched).await?;
    let mut report = Report::new(&cfg, machine, &results, args.baseline.as_deref());
    report.machine.load_after = moat_bench::procfs::load_average();
    args.common.emit(&report)
}

async fn run_cmd(args: RunArgs) -> anyhow::Result<()> {
    let cfg = args.common.load_config()?;
    let opts = RunOptions {
        moat: args.moat,
        upstream: args.upstream,
        proxy: args.proxy,
        pin: args.pin,
        scenarios: args.scenarios,
        upstream_threads: args.upstream_threads,
        upstream_modern: args.upstream_modern,
        extra_config: args.moat_config,
    };
    let report = orchestrate::run(&opts, &cfg).await?;
    args.common.emit(&report)
}

async fn sessions_cmd(args: SessionsArgs) -> anyhow::Result<()> {
    if !(args.settle.is_finite() && args.settle >= 0.0) {
        bail!("--settle must be a non-negative number of seconds");
    }
    let mut moat_env = Vec::new();
    for spec in &args.moat_env {
        let (name, value) = split_pair(spec)?;
        moat_env.push((name.to_owned(), value.to_owned()));
    }
    let opts = SessionsOptions {
        moat: args.moat,
        upstream: args.upstream,
        sessions: args.sessions,
        connections: args.connections,
        settle: Duration::from_secs_f64(args.settle),
        idle_runs: args.idle_runs,
        timeout: Duration::from_millis(args.timeout_ms),
        extra_config: args.moat_config,
        moat_env,
    };
    let report = sessions::run(&opts).await?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

async fn interrupted() -> anyhow::Error {
    moat_bench::shutdown_signal().await;
    anyhow!("interrupted")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moat-bench: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On a signal the command's future is dropped, which kills every child
    // it started (kill_on_drop) and removes its temporary directory.
    let result = rt.block_on(async {
        tokio::select! {
            r = async {
                match cli.command {
                    Cmd::Load(a) => load_cmd(a).await,
                    Cmd::Run(a) => run_cmd(a).await,
                    Cmd::Sessions(a) => sessions_cmd(a).await,
                }
            } => r,
            e = interrupted() => Err(e),
        }
    });
    drop(rt);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("moat-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
