//! `moat-bench sessions`: moat's memory at rest and holding many idle
//! sessions (the memory targets of issue 6).
//!
//! Two measurements, from built binaries, each with its own throw-away data
//! dir:
//!
//! 1. **Idle**: `moat init` (no upstream), then `idle_runs` times: start
//!    `moat serve`, poll `/readyz` every 2 ms (start-up time is spawn to the
//!    first 200), read `/proc/<pid>/status` one second later, SIGTERM. The
//!    median is the figure (as in BENCHMARKS.md, "Start-up time and idle
//!    memory").
//! 2. **Held sessions**: [`Rig`] (bench-upstream registered as `bench`,
//!    the defaults: firewall `enforce`, audit on); after a second at rest
//!    the memory is read, then `sessions` legacy (2025-11-25) sessions are
//!    opened on `/mcp/bench` — `initialize`, then
//!    `notifications/initialized` with the `Mcp-Session-Id` — and left idle.
//!    The client opens them from `connections` workers sharing one HTTP/1.1
//!    client with as many keep-alive connections, so moat holds `sessions`
//!    sessions over `connections` sockets: the cost measured is the
//!    session's, not a connection's. After `settle` the memory is read
//!    again; then every session is pinged, to show that moat still held all
//!    of them (none evicted or expired), and both processes are stopped.
//!
//! Every process is stopped at the end, also on error (`kill_on_drop`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::process::Command;

use crate::client::{self, Endpoint, Era, Session, SessionOptions};
use crate::orchestrate::{self, Proc, Rig, RigOptions};
use crate::procfs;
use crate::report::Machine;

/// The idle-memory target: 40 MB.
pub const IDLE_TARGET_BYTES: u64 = 40_000_000;
/// The target while holding 10,000 idle sessions: 200 MB.
pub const HELD_TARGET_BYTES: u64 = 200_000_000;
/// The session count the held-sessions target is stated for.
pub const HELD_TARGET_SESSIONS: usize = 10_000;

/// What `sessions` measures.
#[derive(Clone, Debug)]
pub struct SessionsOptions {
    /// The `moat` binary (default: beside this executable).
    pub moat: Option<PathBuf>,
    /// The `bench-upstream` binary (default: beside this executable).
    pub upstream: Option<PathBuf>,
    /// Sessions to open and hold (0: only the idle measurement).
    pub sessions: usize,
    /// Client connections (and workers) the sessions are opened over.
    pub connections: usize,
    /// Rest after the last session is open, before memory is read.
    pub settle: Duration,
    /// Starts of an upstream-less moat for the idle figure (0: none).
    pub idle_runs: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// TOML appended to every generated `moat.toml` (tuning experiments).
    pub extra_config: Option<PathBuf>,
    /// Extra environment of `moat serve` (`MALLOC_ARENA_MAX=2`, ...).
    pub moat_env: Vec<(String, String)>,
}

/// A process's memory, from `/proc/<pid>/status` and `/proc/<pid>/fd`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Memory {
    /// `VmRSS`: resident set, KiB.
    pub rss_kib: u64,
    /// `RssAnon`: anonymous (heap, stacks) resident memory, KiB.
    pub rss_anon_kib: u64,
    /// `RssFile`: file-backed (the binary, libraries) resident memory, KiB.
    pub rss_file_kib: u64,
    /// `VmHWM`: peak resident set, KiB.
    pub hwm_kib: u64,
    /// `Threads`.
    pub threads: u64,
    /// Open sockets (`/proc/<pid>/fd` entries that are sockets).
    pub sockets: u64,
}

impl Memory {
    /// Reads `pid`'s memory now.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let field = |name: &str| {
            procfs::parse_status_kib(&status, name).with_context(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS")?,
            rss_anon_kib: field("RssAnon")?,
            rss_file_kib: field("RssFile")?,
            hwm_kib: field("VmHWM")?,
            threads: field("Threads")?,
            sockets: procfs::socket_count(pid).unwrap_or(0),
        })
    }
}

/// One start of an upstream-less moat.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRun {
    /// Spawn to the first 200 from `/readyz`, milliseconds.
    pub ready_ms: f64,
    /// Memory one second after ready.
    pub memory: Memory,
}

/// moat holding many idle sessions.
#[derive(Clone, Debug, Serialize)]
pub struct Held {
    /// Sessions opened (and held).
    pub sessions: usize,
    /// Client connections they were opened over.
    pub connections: usize,
    /// Seconds to open them all.
    pub open_secs: f64,
    /// moat after start-up with the upstream registered, before any session.
    pub before: Memory,
    /// moat after the sessions were opened and `settle` passed.
    pub after: Memory,
    /// `(after.rss - before.rss) / sessions`, bytes.
    pub rss_bytes_per_session: f64,
    /// Sessions that answered `ping` after the measurement.
    pub alive: usize,
    /// Why the others did not, by kind.
    pub ping_errors: BTreeMap<String, usize>,
}

/// The result of `moat-bench sessions`.
#[derive(Debug, Serialize)]
pub struct SessionsReport {
    /// The machine.
    pub machine: Machine,
    /// Each idle start, in order.
    pub idle_runs: Vec<IdleRun>,
    /// Held sessions, when any were opened.
    pub held: Option<Held>,
    /// How the run was set up.
    pub notes: Vec<String>,
}

/// Runs both measurements.
pub async fn run(opts: &SessionsOptions) -> anyhow::Result<SessionsReport> {
    let moat_bin = orchestrate::binary(opts.moat.as_ref(), "moat")?;
    if opts.sessions > 0 && opts.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let machine = Machine::now();
    let dir = tempfile::Builder::new().prefix("moat-bench-").tempdir().context("creating a temporary directory")?;
    let moat_log = dir.path().join("moat.log");
    let mut notes = Vec::new();
    if !opts.moat_env.is_empty() {
        let env: Vec<String> = opts.moat_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        notes.push(format!("moat serve ran with {}", env.join(" ")));
    }
    let result = async {
        let idle_runs = idle(opts, &moat_bin, dir.path(), &moat_log).await?;
        let held = if opts.sessions > 0 {
            let upstream_bin = orchestrate::binary(opts.upstream.as_ref(), "bench-upstream")?;
            Some(hold(opts, &moat_bin, &upstream_bin, dir.path(), &moat_log, &mut notes).await?)
        } else {
            None
        };
        anyhow::Ok((idle_runs, held))
    }
    .await;
    match result {
        Ok((idle_runs, held)) => {
            let mut machine = machine;
            machine.load_after = procfs::load_average();
            Ok(SessionsReport { machine, idle_runs, held, notes })
        }
        Err(e) => {
            let tail = orchestrate::log_tail(&moat_log, 20);
            if tail.is_empty() { Err(e) } else { Err(e.context(format!("moat's log ends with:\n{tail}"))) }
        }
    }
}

/// The idle measurement: `runs` starts of a moat with no upstream.
async fn idle(opts: &SessionsOptions, moat_bin: &Path, dir: &Path, log: &Path) -> anyhow::Result<Vec<IdleRun>> {
    if opts.idle_runs == 0 {
        return Ok(Vec::new());
    }
    let data = dir.join("idle-data");
    orchestrate::moat_init(moat_bin, &data).await?;
    let config = match &opts.extra_config {
        Some(extra) => {
            let path = dir.join("idle.toml");
            std::fs::copy(extra, &path).with_context(|| format!("reading {}", extra.display()))?;
            Some(path)
        }
        None => None,
    };
    let mut runs = Vec::with_capacity(opts.idle_runs);
    for i in 0..opts.idle_runs {
        let listen = format!("127.0.0.1:{}", orchestrate::free_port()?);
        let mut cmd = Command::new(moat_bin);
        orchestrate::serve_command(&mut cmd, &data, &listen, log, &opts.moat_env)?;
        if let Some(config) = &config {
            cmd.arg("--config").arg(config);
        }
        let spawned = Instant::now();
        let mut moat = Proc::spawn("moat", cmd)?;
        let ready =
            orchestrate::wait_ready(&mut moat, &format!("http://{listen}/readyz"), Duration::from_millis(2), LIMIT)
                .await;
        let ready_ms = spawned.elapsed().as_secs_f64() * 1e3;
        if let Err(e) = ready {
            moat.stop(Duration::from_secs(10)).await;
            return Err(e);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let memory = Memory::read(moat.pid);
        moat.stop(Duration::from_secs(10)).await;
        let memory = memory?;
        eprintln!(
            "idle start {}/{}: ready in {ready_ms:.0} ms, VmRSS {:.1} MiB",
            i + 1,
            opts.idle_runs,
            mib(memory.rss_kib)
        );
        runs.push(IdleRun { ready_ms, memory });
    }
    Ok(runs)
}

/// How long moat may take to become ready.
const LIMIT: Duration = Duration::from_secs(60);

/// The held-sessions measurement.
async fn hold(
    opts: &SessionsOptions,
    moat_bin: &Path,
    upstream_bin: &Path,
    dir: &Path,
    moat_log: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Held> {
    let mut rig = Rig::start(&RigOptions {
        moat_bin,
        upstream_bin,
        dir,
        moat_log,
        servers: &["bench"],
        extra_config: opts.extra_config.as_deref(),
        moat_env: &opts.moat_env,
        moat_cpu: None,
        load_cpu: None,
        upstream_threads: None,
        upstream_modern: false,
    })
    .await?;
    // The rig's own note about the environment repeats the one above.
    notes.extend(rig.notes.iter().filter(|n| !n.starts_with("moat serve ran with")).cloned());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = Memory::read(rig.moat.pid)?;

    let endpoint = Endpoint { url: format!("{}/mcp/bench", rig.moat_url), bearer: Some(rig.key.clone()) };
    let session_opts = SessionOptions { era: Era::Legacy, timeout: opts.timeout, accept_sse: true };
    let http = client::http_client(opts.timeout, opts.connections).map_err(anyhow::Error::new)?;
    let started = Instant::now();
    let sessions = open_sessions(&http, &endpoint, session_opts, opts.sessions, opts.connections).await?;
    let open_secs = started.elapsed().as_secs_f64();
    eprintln!("opened {} sessions over {} connections in {open_secs:.1} s", sessions.len(), opts.connections);

    tokio::time::sleep(opts.settle).await;
    if let Some(status) = rig.moat.exited() {
        bail!("moat exited while holding the sessions ({status})");
    }
    let after = Memory::read(rig.moat.pid)?;
    let (alive, ping_errors) = ping_all(sessions, opts.connections).await;
    rig.stop().await;

    let grown = after.rss_kib.saturating_sub(before.rss_kib) as f64 * 1024.0;
    Ok(Held {
        sessions: opts.sessions,
        connections: opts.connections,
        open_secs,
        rss_bytes_per_session: grown / opts.sessions as f64,
        before,
        after,
        alive,
        ping_errors,
    })
}

/// Opens `n` sessions from `workers` concurrent workers over `http`.
async fn open_sessions(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    opts: SessionOptions,
    n: usize,
    workers: usize,
) -> anyhow::Result<Vec<Session>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.min(n) {
        let (http, endpoint, next) = (http.clone(), endpoint.clone(), next.clone());
        set.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok(mine);
                }
                let session = Session::connect_via(http.clone(), &endpoint, opts)
                    .await
                    .with_context(|| format!("opening session {} of {n}", i + 1))?;
                mine.push(session);
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        let mine: anyhow::Result<Vec<Session>> = joined.context("a session worker panicked")?;
        all.extend(mine?);
    }
    Ok(all)
}

/// Pings every session from `workers` workers; returns how many answered
/// and the errors of the others by kind.
async fn ping_all(sessions: Vec<Session>, workers: usize) -> (usize, BTreeMap<String, usize>) {
    let workers = workers.max(1);
    let mut shares: Vec<Vec<Session>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, s) in sessions.into_iter().enumerate() {
        shares[i % workers].push(s);
    }
    let mut set = tokio::task::JoinSet::new();
    for share in shares {
        set.spawn(async move {
            let mut alive = 0;
            let mut errors = BTreeMap::new();
            for mut s in share {
                match s.ping().await {
                    Ok(()) => alive += 1,
                    Err(e) => *errors.entry(e.kind()).or_insert(0) += 1,
                }
            }
            (alive, errors)
        });
    }
    let mut alive = 0;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((a, e)) => {
                alive += a;
                for (k, n) in e {
                    *errors.entry(k).or_insert(0) += n;
                }
            }
            Err(_) => *errors.entry("worker-panicked".into()).or_insert(0) += 1,
        }
    }
    (alive, errors)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

impl SessionsReport {
    /// The median idle `VmRSS`, KiB.
    pub fn idle_rss_median_kib(&self) -> Option<f64> {
        median(&mut self.idle_runs.iter().map(|r| r.memory.rss_kib as f64).collect::<Vec<_>>())
    }

    /// A human-readable summary.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        out.push_str(&format!(
            "machine: {} CPUs, {}; load average {} -> {}\n",
            m.cpus,
            m.cpu_model.as_deref().unwrap_or("unknown CPU"),
            m.load_before.map_or("?".into(), |l| format!("{l:.2}")),
            m.load_after.map_or("?".into(), |l| format!("{l:.2}")),
        ));
        if !self.idle_runs.is_empty() {
            let col = |f: fn(&IdleRun) -> f64| {
                let mut v: Vec<f64> = self.idle_runs.iter().map(f).collect();
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (median(&mut v).unwrap_or(0.0), lo, hi)
            };
            let (ready, rlo, rhi) = col(|r| r.ready_ms);
            let (rss, lo, hi) = col(|r| r.memory.rss_kib as f64);
            let (anon, alo, ahi) = col(|r| r.memory.rss_anon_kib as f64);
            let (file, flo, fhi) = col(|r| r.memory.rss_file_kib as f64);
            let (threads, _, _) = col(|r| r.memory.threads as f64);
            out.push_str(&format!("\nidle moat, no upstream, {} starts (median, range):\n", self.idle_runs.len()));
            out.push_str(&format!("  start-up to ready: {ready:.0} ms ({rlo:.0}-{rhi:.0})\n"));
            out.push_str(&format!(
                "  VmRSS:   {:.1} MiB = {:.1} MB ({:.1}-{:.1} MiB)\n",
                rss / 1024.0,
                rss * 1024.0 / 1e6,
                lo / 1024.0,
                hi / 1024.0
            ));
            out.push_str(&format!("  RssAnon: {:.1} MiB ({:.1}-{:.1})\n", anon / 1024.0, alo / 1024.0, ahi / 1024.0));
            out.push_str(&format!("  RssFile: {:.1} MiB ({:.1}-{:.1})\n", file / 1024.0, flo / 1024.0, fhi / 1024.0));
            out.push_str(&format!("  threads: {threads:.0}\n"));
        }
        if let Some(h) = &self.held {
            out.push_str(&format!(
                "\n{} legacy sessions (initialize + notifications/initialized) on /mcp/bench over {} keep-alive \
                 connections, opened in {:.1} s ({:.0}/s); {} of them answered ping afterwards{}\n",
                h.sessions,
                h.connections,
                h.open_secs,
                h.sessions as f64 / h.open_secs.max(1e-9),
                h.alive,
                if h.ping_errors.is_empty() { String::new() } else { format!(" (errors: {:?})", h.ping_errors) },
            ));
            out.push_str("| moat | VmRSS MiB | MB | RssAnon MiB | RssFile MiB | VmHWM MiB | threads | sockets |\n");
            out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
            for (name, mem) in [("before (1 upstream, at rest)", &h.before), ("holding the sessions", &h.after)] {
                out.push_str(&format!(
                    "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |\n",
                    mib(mem.rss_kib),
                    mb(mem.rss_kib),
                    mib(mem.rss_anon_kib),
                    mib(mem.rss_file_kib),
                    mib(mem.hwm_kib),
                    mem.threads,
                    mem.sockets,
                ));
            }
            out.push_str(&format!("per session: {:.0} bytes of VmRSS\n", h.rss_bytes_per_session));
        }
        out.push_str("\nissue 6 memory targets:\n");
        if let Some(idle) = self.idle_rss_median_kib() {
            let bytes = idle * 1024.0;
            out.push_str(&format!(
                "  idle RSS < 40 MB: {:.1} MB median: {}\n",
                bytes / 1e6,
                verdict(bytes < IDLE_TARGET_BYTES as f64)
            ));
        }
        if let Some(h) = &self.held {
            let bytes = h.after.rss_kib * 1024;
            let note = if h.sessions == HELD_TARGET_SESSIONS {
                String::new()
            } else {
                format!(" (stated for {HELD_TARGET_SESSIONS} sessions; this run held {})", h.sessions)
            };
            out.push_str(&format!(
                "  RSS < 200 MB holding 10,000 idle sessions: {:.1} MB: {}{note}\n",
                bytes as f64 / 1e6,
                verdict(bytes < HELD_TARGET_BYTES && h.alive == h.sessions)
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn own_memory_is_readable() {
        let m = Memory::read(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.rss_kib <= m.hwm_kib);
        assert!(m.rss_anon_kib + m.rss_file_kib <= m.rss_kib + 1);
        assert!(m.threads >= 1);
    }

    #[test]
    fn table_states_the_targets() {
        let mem =
            |rss_kib| Memory { rss_kib, rss_anon_kib: 1, rss_file_kib: 1, hwm_kib: rss_kib, threads: 3, sockets: 2 };
        let report = SessionsReport {
            machine: Machine { cpus: 2, cpu_model: None, load_before: None, load_after: None },
            idle_runs: [30_000, 40_000, 35_000]
                .into_iter()
                .map(|k| IdleRun { ready_ms: 100.0, memory: mem(k) })
                .collect(),
            held: Some(Held {
                sessions: 10_000,
                connections: 16,
                open_secs: 5.0,
                before: mem(35_000),
                after: mem(200_000),
                rss_bytes_per_session: 16_896.0,
                alive: 10_000,
                ping_errors: BTreeMap::new(),
            }),
            notes: Vec::new(),
        };
        let table = report.to_table();
        // 35,000 KiB = 35.8 MB: met; 200,000 KiB = 204.8 MB: not met.
        assert!(table.contains("idle RSS < 40 MB: 35.8 MB median: met"), "{table}");
        assert!(table.contains("holding 10,000 idle sessions: 204.8 MB: NOT met"), "{table}");
        assert!(table.contains("10000 of them answered ping"), "{table}");
    }
}
