//! `moat-bench run`: the whole measurement from built binaries.
//!
//! 1. starts `bench-upstream` on a free loopback port;
//! 2. `moat init` in a temporary data dir (the owner key it prints is used
//!    for everything below);
//! 3. writes a `moat.toml` registering the upstream three times (the same
//!    URL): `bench` (the defaults: firewall `enforce`, audit on),
//!    `bench-lite` (firewall `disabled` by a server override) and
//!    `bench-all` (the defaults plus an organisation credential injected as
//!    `X-Api-Key`: everything on);
//! 4. starts `moat serve`, waits for `/healthz`, sets the override and the
//!    credential with the `moat` CLI;
//! 5. reads both processes' resident memory (idle), runs the load against
//!    the upstream directly and through each of moat's endpoints, with each
//!    process's CPU time (`/proc/<pid>/stat`) read around every measured
//!    segment, then reads memory again;
//! 6. stops both processes (SIGTERM, then SIGKILL after 10 s). Every child
//!    is also killed when this function returns early or its future is
//!    dropped (`kill_on_drop`), and the temporary directory is removed.
//!
//! With `pin`, moat runs on CPU 1 and the upstream and the load generator
//! on CPU 0 (`taskset`), so that moat's CPU is not shared with its load.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::client::Endpoint;
use crate::load::{self, LoadConfig, Target, Watched};
use crate::procfs;
use crate::report::{Machine, ProcessMemory, Report};
use crate::upstream::StatsSnapshot;

/// The targets a run can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The upstream, directly.
    Direct,
    /// Through `bench-proxy`, a bare pass-through proxy made of moat's parts
    /// (pinned where moat is): the floor under moat's CPU per call.
    Proxy,
    /// Through moat, firewall disabled for the server (auth, routing,
    /// sessions, audit only).
    MoatFwOff,
    /// Through moat with the defaults (firewall enforce, audit).
    Moat,
    /// Through moat with everything on: firewall enforce, audit, and a
    /// credential injected.
    MoatAll,
}

impl Scenario {
    /// The target's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Proxy => crate::report::FLOOR_TARGET,
            Scenario::MoatFwOff => "moat-fw-off",
            Scenario::Moat => "moat",
            Scenario::MoatAll => "moat-all",
        }
    }

    /// The moat server it goes through, if any.
    fn server(self) -> Option<&'static str> {
        match self {
            Scenario::Direct | Scenario::Proxy => None,
            Scenario::MoatFwOff => Some("bench-lite"),
            Scenario::Moat => Some("bench"),
            Scenario::MoatAll => Some("bench-all"),
        }
    }
}

/// What `run` needs besides the load.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `moat` binary (default: beside this executable).
    pub moat: Option<PathBuf>,
    /// The `bench-upstream` binary (default: beside this executable).
    pub upstream: Option<PathBuf>,
    /// The `bench-proxy` binary (default: beside this executable).
    pub proxy: Option<PathBuf>,
    /// Pin moat to CPU 1, the upstream and the load generator to CPU 0.
    pub pin: bool,
    /// Targets, in run order.
    pub scenarios: Vec<Scenario>,
    /// Worker threads of the upstream (default: its own default).
    pub upstream_threads: Option<usize>,
    /// Start the upstream with `--modern` (moat then talks 2026-07-28 to it).
    pub upstream_modern: bool,
    /// TOML appended to the generated `moat.toml` (tuning experiments).
    pub extra_config: Option<PathBuf>,
}

/// A child process that is killed if it is still running when dropped.
pub(crate) struct Proc {
    name: &'static str,
    child: Child,
    pub pid: u32,
    /// Kept open so that the child never writes into a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Proc {
    pub fn spawn(name: &'static str, mut cmd: Command) -> anyhow::Result<Self> {
        cmd.kill_on_drop(true).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        Ok(Proc { name, child, pid, _stdout: None })
    }

    /// Starts a helper server that prints `listening on ADDR` once bound;
    /// returns it and `ADDR`.
    pub async fn spawn_listening(name: &'static str, mut cmd: Command) -> anyhow::Result<(Self, String)> {
        cmd.arg("--listen").arg("127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut proc = Proc::spawn(name, cmd)?;
        let stdout = proc.child.stdout.take().ok_or_else(|| anyhow!("{name} has no stdout"))?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .with_context(|| format!("{name} did not say where it listens within 10 s"))?
            .with_context(|| format!("reading {name}'s stdout"))?;
        proc._stdout = Some(reader);
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow!("unexpected first line from {name}: {line:?}"))?
            .to_owned();
        Ok((proc, addr))
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            eprintln!("{}: no exit {} s after SIGTERM; killing it", self.name, grace.as_secs());
            let _ = self.child.kill().await;
        }
    }
}

/// A command, under `taskset -c CPU` when `cpu` is given.
pub(crate) fn command(program: &Path, cpu: Option<u32>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Removes every `MOAT_*` variable from a child's environment, so that the
/// caller's settings (a database URL, a config file) cannot leak into the
/// throw-away gateway.
pub(crate) fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MOAT_") {
            cmd.env_remove(key);
        }
    }
}

fn beside_self(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("this executable has no directory"))?;
    Ok(dir.join(name))
}

pub(crate) fn binary(given: Option<&PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.clone(),
        None => beside_self(name)?,
    };
    if !path.is_file() {
        bail!(
            "{} not found; build it first (`cargo build --release -p moat` and `cargo build --release -p moat-bench`, \
             or crates/moat-bench/run.sh) or pass its path",
            path.display()
        );
    }
    Ok(path)
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What [`Rig::start`] needs.
pub(crate) struct RigOptions<'a> {
    pub moat_bin: &'a Path,
    pub upstream_bin: &'a Path,
    /// Holds the data dir and `moat.toml`.
    pub dir: &'a Path,
    /// moat's stdout and stderr.
    pub moat_log: &'a Path,
    /// Names under which the upstream is registered (same URL each).
    pub servers: &'a [&'a str],
    /// TOML appended to the generated `moat.toml`.
    pub extra_config: Option<&'a Path>,
    /// Extra environment of `moat serve` (allocator experiments such as
    /// `MALLOC_ARENA_MAX`).
    pub moat_env: &'a [(String, String)],
    pub moat_cpu: Option<u32>,
    pub load_cpu: Option<u32>,
    pub upstream_threads: Option<usize>,
    pub upstream_modern: bool,
}

/// `bench-upstream` and a throw-away `moat` that registers it, both running.
/// Dropping it kills both (`kill_on_drop`); [`Rig::stop`] ends them gently.
pub(crate) struct Rig {
    pub upstream: Proc,
    /// `127.0.0.1:PORT` of the upstream.
    pub upstream_addr: String,
    /// The upstream's MCP endpoint.
    pub upstream_url: String,
    pub moat: Proc,
    /// `http://127.0.0.1:PORT` of moat.
    pub moat_url: String,
    /// The owner key `moat init` printed.
    pub key: String,
    /// What a report should say about how the rig was set up.
    pub notes: Vec<String>,
}

impl Rig {
    /// Starts the upstream, runs `moat init` in `dir/data`, writes
    /// `dir/moat.toml` registering the upstream under each of `servers`,
    /// then starts `moat serve` and waits for `/healthz`.
    pub async fn start(o: &RigOptions<'_>) -> anyhow::Result<Rig> {
        let mut notes = Vec::new();
        // 1. The upstream.
        let mut cmd = command(o.upstream_bin, o.load_cpu);
        if let Some(n) = o.upstream_threads {
            cmd.arg("--threads").arg(n.to_string());
        }
        if o.upstream_modern {
            cmd.arg("--modern");
        }
        let (upstream, upstream_addr) = Proc::spawn_listening("bench-upstream", cmd).await?;
        let upstream_url = format!("http://{upstream_addr}/mcp");
        eprintln!("bench-upstream: pid {} at {upstream_url}", upstream.pid);

        // 2. A fresh data dir and its owner key.
        let data = o.dir.join("data");
        let key = moat_init(o.moat_bin, &data).await?;

        // 3. The configuration.
        let config = o.dir.join("moat.toml");
        let mut toml = String::new();
        for server in o.servers {
            toml.push_str(&format!(
                "[[servers]]\nname = \"{server}\"\ntransport = \"streamable-http\"\nurl = \"{upstream_url}\"\n\n"
            ));
        }
        if let Some(extra) = o.extra_config {
            let text = std::fs::read_to_string(extra).with_context(|| format!("reading {}", extra.display()))?;
            toml.push_str(&text);
            notes.push(format!("moat.toml extended with {}: {}", extra.display(), one_line(&text)));
        }
        std::fs::write(&config, toml).context("writing moat.toml")?;

        // 4. The gateway.
        let listen = format!("127.0.0.1:{}", free_port()?);
        let moat_url = format!("http://{listen}");
        let mut cmd = command(o.moat_bin, o.moat_cpu);
        serve_command(&mut cmd, &data, &listen, o.moat_log, o.moat_env)?;
        cmd.arg("--config").arg(&config);
        if !o.moat_env.is_empty() {
            let env: Vec<String> = o.moat_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            notes.push(format!("moat serve ran with {}", env.join(" ")));
        }
        let mut moat = Proc::spawn("moat", cmd)?;
        wait_ready(&mut moat, &format!("{moat_url}/healthz"), Duration::from_millis(100), Duration::from_secs(60))
            .await?;
        eprintln!("moat: pid {} at {moat_url}", moat.pid);
        Ok(Rig { upstream, upstream_addr, upstream_url, moat, moat_url, key, notes })
    }

    /// Stops moat, then the upstream.
    pub async fn stop(self) {
        self.moat.stop(Duration::from_secs(10)).await;
        self.upstream.stop(Duration::from_secs(10)).await;
    }
}

/// `moat init --data-dir DATA`; returns the owner key it prints.
pub(crate) async fn moat_init(moat_bin: &Path, data: &Path) -> anyhow::Result<String> {
    let mut init = Command::new(moat_bin);
    clean_env(&mut init);
    init.arg("init").arg("--data-dir").arg(data).stdin(Stdio::null()).kill_on_drop(true);
    let out = init.output().await.context("running `moat init`")?;
    if !out.status.success() {
        bail!("`moat init` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let key = String::from_utf8(out.stdout).context("`moat init` printed non-UTF-8")?.trim().to_owned();
    if key.is_empty() || key.contains(char::is_whitespace) {
        bail!("`moat init` did not print one API key");
    }
    Ok(key)
}

/// Makes `cmd` a `moat serve --data-dir DATA --listen LISTEN` with a clean
/// environment plus `env`, its output appended to `log`.
pub(crate) fn serve_command(
    cmd: &mut Command,
    data: &Path,
    listen: &str,
    log: &Path,
    env: &[(String, String)],
) -> anyhow::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    clean_env(cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .arg("serve")
        .arg("--data-dir")
        .arg(data)
        .arg("--listen")
        .arg(listen)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    Ok(())
}

/// Runs the whole measurement and returns its report.
pub async fn run(opts: &RunOptions, cfg: &LoadConfig) -> anyhow::Result<Report> {
    let moat_bin = binary(opts.moat.as_ref(), "moat")?;
    let upstream_bin = binary(opts.upstream.as_ref(), "bench-upstream")?;
    if opts.scenarios.is_empty() {
        bail!("no scenario to run");
    }
    let dir = tempfile::Builder::new().prefix("moat-bench-").tempdir().context("creating a temporary directory")?;
    let moat_log = dir.path().join("moat.log");
    match run_in(opts, cfg, &moat_bin, &upstream_bin, dir.path(), &moat_log).await {
        Ok(report) => Ok(report),
        Err(e) => {
            let tail = log_tail(&moat_log, 20);
            if tail.is_empty() { Err(e) } else { Err(e.context(format!("moat's log ends with:\n{tail}"))) }
        }
    }
}

async fn run_in(
    opts: &RunOptions,
    cfg: &LoadConfig,
    moat_bin: &Path,
    upstream_bin: &Path,
    dir: &Path,
    moat_log: &Path,
) -> anyhow::Result<Report> {
    let mut notes = Vec::new();
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let (moat_cpu, load_cpu) = if opts.pin {
        if cpus < 2 {
            bail!("--pin needs at least 2 CPUs; this machine has {cpus}");
        }
        notes.push("pinned with taskset: moat on CPU 1; bench-upstream and the load generator on CPU 0".to_owned());
        (Some(1), Some(0))
    } else {
        notes.push("not pinned: moat, bench-upstream and the load generator share all CPUs".to_owned());
        (None, None)
    };
    let machine = Machine::now();

    let rig = Rig::start(&RigOptions {
        moat_bin,
        upstream_bin,
        dir,
        moat_log,
        servers: &["bench", "bench-lite", "bench-all"],
        extra_config: opts.extra_config.as_deref(),
        moat_env: &[],
        moat_cpu,
        load_cpu,
        upstream_threads: opts.upstream_threads,
        upstream_modern: opts.upstream_modern,
    })
    .await?;
    let Rig { upstream, upstream_addr, upstream_url, mut moat, moat_url, key, notes: rig_notes } = rig;
    notes.extend(rig_notes);

    admin(
        moat_bin,
        &moat_url,
        &key,
        &["firewall", "policy", "set", "--server", "bench-lite", "--mode", "disabled"],
        None,
    )
    .await?;
    // A throw-away value: it only has to be injected.
    let secret = format!("bench-{:016x}", rand_u64());
    admin(
        moat_bin,
        &moat_url,
        &key,
        &["credential", "set", "--server", "bench-all", "--scope", "org", "--header", "X-Api-Key"],
        Some(&secret),
    )
    .await?;

    // The bare proxy, on moat's CPU, when asked for.
    let proxy = if opts.scenarios.contains(&Scenario::Proxy) {
        let proxy_bin = binary(opts.proxy.as_ref(), "bench-proxy")?;
        let mut cmd = command(&proxy_bin, moat_cpu);
        cmd.arg("--upstream").arg(&upstream_url);
        let (proc, addr) = Proc::spawn_listening("bench-proxy", cmd).await?;
        eprintln!("bench-proxy: pid {} at http://{addr}/mcp", proc.pid);
        notes.push(
            "proxy: bench-proxy, a bare pass-through proxy made of moat's parts (axum server, reqwest client), \
             on moat's CPU; its figures are the floor under moat's, not held to the targets"
                .to_owned(),
        );
        Some((proc, format!("http://{addr}/mcp")))
    } else {
        None
    };

    // 5. Idle memory, then the load.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let moat_idle = procfs::status_kib(moat.pid, "VmRSS").ok();
    let upstream_idle = procfs::status_kib(upstream.pid, "VmRSS").ok();
    if let Some(cpu) = load_cpu {
        pin_self(cpu).await?;
    }
    let targets: Vec<Target> = opts
        .scenarios
        .iter()
        .map(|s| Target {
            name: s.name().to_owned(),
            endpoint: match (s, s.server(), &proxy) {
                (Scenario::Proxy, _, Some((_, url))) => Endpoint { url: url.clone(), bearer: None },
                (_, None, _) => Endpoint { url: upstream_url.clone(), bearer: None },
                (_, Some(server), _) => Endpoint { url: format!("{moat_url}/mcp/{server}"), bearer: Some(key.clone()) },
            },
        })
        .collect();
    let mut watched =
        vec![Watched { name: "moat".into(), pid: moat.pid }, Watched { name: "upstream".into(), pid: upstream.pid }];
    if let Some((p, _)) = &proxy {
        watched.push(Watched { name: "proxy".into(), pid: p.pid });
    }
    let stats_before = upstream_stats(&upstream_addr).await;
    let results = load::run(cfg, &targets, &watched).await?;
    let stats_after = upstream_stats(&upstream_addr).await;
    if let Some(status) = moat.exited() {
        bail!("moat exited during the run ({status})");
    }
    let memory = |name: &str, pid: u32, idle: Option<u64>| ProcessMemory {
        name: name.to_owned(),
        rss_idle_kib: idle,
        rss_after_kib: procfs::status_kib(pid, "VmRSS").ok(),
        rss_peak_kib: procfs::status_kib(pid, "VmHWM").ok(),
    };
    let processes = vec![memory("moat", moat.pid, moat_idle), memory("bench-upstream", upstream.pid, upstream_idle)];

    // 6. Stop them all.
    if let Some((p, _)) = proxy {
        p.stop(Duration::from_secs(10)).await;
    }
    moat.stop(Duration::from_secs(10)).await;
    upstream.stop(Duration::from_secs(10)).await;

    let mut report = Report::new(cfg, machine, &results, Some(Scenario::Direct.name()));
    report.machine.load_after = procfs::load_average();
    report.processes = processes;
    notes.push(
        "moat: firewall enforce (default), audit on; moat-fw-off: firewall disabled for its server; \
         moat-all: as moat plus an org credential injected as X-Api-Key"
            .to_owned(),
    );
    if let (Ok(before), Ok(after)) = (stats_before, stats_after) {
        let with_key = after.with_api_key.saturating_sub(before.with_api_key);
        let calls = after.tool_calls.saturating_sub(before.tool_calls);
        notes.push(format!(
            "bench-upstream saw {calls} tools/call during the run; {with_key} requests carried X-Api-Key (injected by moat)"
        ));
        if opts.scenarios.contains(&Scenario::MoatAll) && with_key == 0 {
            notes.push("WARNING: no request carried the injected credential".to_owned());
        }
    }
    report.notes = notes;
    report.check_goals();
    Ok(report)
}

/// A TOML snippet on one line, comments and blank lines dropped.
fn one_line(toml: &str) -> String {
    toml.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect::<Vec<_>>().join("; ")
}

/// Not a secret generator: a value that differs between runs.
fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64).rotate_left(17) ^ u64::from(std::process::id())
}

/// Polls `url` every `every` until it answers 2xx; fails if moat exits or
/// `within` passes first.
pub(crate) async fn wait_ready(moat: &mut Proc, url: &str, every: Duration, within: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(status) = moat.exited() {
            bail!("moat exited before {url} answered ({status})");
        }
        if let Ok(resp) = http.get(url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{url} did not answer within {} s", within.as_secs());
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs an admin command of the `moat` CLI against the running gateway.
async fn admin(moat_bin: &Path, url: &str, key: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = Command::new(moat_bin);
    clean_env(&mut cmd);
    cmd.args(args)
        .env("MOAT_URL", url)
        .env("MOAT_API_KEY", key)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| format!("running `moat {}`", args.join(" ")))?;
    if let (Some(value), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(value.as_bytes()).await?;
        drop(pipe);
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!("`moat {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Pins every thread of this process to `cpu` (`taskset -a -p`).
async fn pin_self(cpu: u32) -> anyhow::Result<()> {
    let out = Command::new("taskset")
        .arg("-a")
        .arg("-p")
        .arg("-c")
        .arg(cpu.to_string())
        .arg(std::process::id().to_string())
        .stdout(Stdio::null())
        .output()
        .await
        .context("running taskset")?;
    if !out.status.success() {
        bail!("taskset failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

async fn upstream_stats(addr: &str) -> anyhow::Result<StatsSnapshot> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build()?;
    Ok(http.get(format!("http://{addr}/stats")).send().await?.json().await?)
}
