//! The load generator: N virtual clients calling `tools/call echo` against
//! one or more targets, closed-loop or at a fixed total rate.
//!
//! Open loop (`rate` set): client `k` of `C` sends at `start + k/R + j·C/R`,
//! so the whole pool sends at `R` calls/s whatever the latency. Latency is
//! measured from the *scheduled* time when the client is behind (its
//! previous call ran past the slot: the wait counts, which avoids
//! coordinated omission), and from the actual send time otherwise (tokio's
//! timer fires up to 1 ms late, a delay of the load generator, not of the
//! target). Sends more than 1 ms behind schedule are counted.
//!
//! Closed loop (no rate): each client sends its next call as soon as the
//! previous one is answered; this measures the maximum throughput at that
//! concurrency.
//!
//! Targets are measured one after the other, each after its own warm-up;
//! with `rounds` > 1 the measured time of each target is split into that
//! many segments, interleaved (A B A B ...), so that a noisy neighbour
//! weighs on every target alike. Every target keeps its sessions (one
//! handshake per client) for the whole run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{CallError, Endpoint, Era, Session, SessionOptions};
use crate::procfs;

/// Highest latency the histograms hold (µs); longer ones are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The shape of the load.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Concurrent clients (sessions) per target.
    pub clients: usize,
    /// Total calls per second per target (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// Measured time per target.
    pub duration: Duration,
    /// Unmeasured time per target before its first measured segment.
    pub warmup: Duration,
    /// Interleaved segments the measured time is split into.
    pub rounds: u32,
    /// The text each `echo` call sends (and expects back).
    pub text: String,
    /// The protocol era of the sessions.
    pub era: Era,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Accept `text/event-stream` answers (see [`SessionOptions`]).
    pub accept_sse: bool,
}

/// A system under test.
#[derive(Clone, Debug)]
pub struct Target {
    /// A short name for reports (`direct`, `moat`, ...).
    pub name: String,
    /// Where to connect.
    pub endpoint: Endpoint,
}

/// A process whose CPU time is attributed to each target's measured time.
#[derive(Clone, Debug)]
pub struct Watched {
    /// A name for reports (`moat`, `upstream`).
    pub name: String,
    /// Its pid.
    pub pid: u32,
}

/// What one target did over its measured segments.
#[derive(Debug)]
pub struct TargetResult {
    /// The target's name.
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Successful calls.
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Failed calls by kind.
    pub error_kinds: BTreeMap<String, u64>,
    /// The first error seen, for diagnosis.
    pub first_error: Option<String>,
    /// Sends more than 1 ms behind schedule (open loop only).
    pub behind_schedule: u64,
    /// Measured wall time (sum of segments).
    pub elapsed: Duration,
    /// Latency of successful calls, µs.
    pub histogram: Histogram<u64>,
    /// CPU time (µs) of each watched process, and of this load generator
    /// (`loadgen`), over the measured segments.
    pub cpu_micros: BTreeMap<String, u64>,
}

impl TargetResult {
    fn new(target: &Target) -> Result<Self, hdrhistogram::CreationError> {
        Ok(TargetResult {
            name: target.name.clone(),
            url: target.endpoint.url.clone(),
            calls: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            first_error: None,
            behind_schedule: 0,
            elapsed: Duration::ZERO,
            histogram: new_histogram()?,
            cpu_micros: BTreeMap::new(),
        })
    }

    /// Successful calls per second of measured time.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.calls as f64 / secs } else { 0.0 }
    }

    fn absorb(&mut self, c: ClientTally) -> Result<(), hdrhistogram::AdditionError> {
        self.calls += c.calls;
        self.errors += c.errors;
        for (k, n) in c.error_kinds {
            *self.error_kinds.entry(k).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = c.first_error;
        }
        self.behind_schedule += c.behind;
        self.histogram.add(&c.histogram)
    }
}

fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
}

/// What can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A client of a target could not open its session.
    #[error("{target}: session handshake failed: {error}")]
    Handshake {
        /// The target.
        target: String,
        /// Why.
        error: CallError,
    },
    /// A histogram could not be built or merged.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A client task panicked or was cancelled.
    #[error("a client task failed: {0}")]
    Task(String),
    /// The configuration cannot be run.
    #[error("invalid load: {0}")]
    Invalid(String),
}

/// Runs the load against every target and returns one result per target,
/// in order. Progress goes to stderr.
pub async fn run(cfg: &LoadConfig, targets: &[Target], watched: &[Watched]) -> Result<Vec<TargetResult>, LoadError> {
    if cfg.clients == 0 {
        return Err(LoadError::Invalid("at least one client is needed".into()));
    }
    if let Some(rate) = cfg.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(LoadError::Invalid("the rate must be a positive number".into()));
    }
    if cfg.rounds == 0 {
        return Err(LoadError::Invalid("at least one round is needed".into()));
    }
    let text_json: Arc<str> = serde_json::to_string(&cfg.text).map_err(|e| LoadError::Invalid(e.to_string()))?.into();
    let text: Arc<str> = cfg.text.clone().into();

    let mut pools = Vec::with_capacity(targets.len());
    for t in targets {
        eprintln!("{}: opening {} sessions at {}", t.name, cfg.clients, t.endpoint.url);
        pools.push(connect_all(t, cfg).await?);
    }
    let mut results = targets
        .iter()
        .map(TargetResult::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::Histogram(e.to_string()))?;

    let segment = cfg.duration / cfg.rounds;
    for round in 0..cfg.rounds {
        for (i, t) in targets.iter().enumerate() {
            let Some(sessions) = pools.get_mut(i) else { continue };
            if round == 0 && !cfg.warmup.is_zero() {
                eprintln!("{}: warm-up {:.1} s", t.name, cfg.warmup.as_secs_f64());
                let taken = std::mem::take(sessions);
                let (back, _) = phase(taken, cfg, cfg.warmup, &text, &text_json).await?;
                *sessions = back;
            }
            eprintln!("{}: measuring {:.1} s (round {}/{})", t.name, segment.as_secs_f64(), round + 1, cfg.rounds);
            let before = cpu_snapshot(watched);
            let taken = std::mem::take(sessions);
            let (back, outcome) = phase(taken, cfg, segment, &text, &text_json).await?;
            *sessions = back;
            let after = cpu_snapshot(watched);
            let Some(result) = results.get_mut(i) else { continue };
            for (name, b) in &before {
                if let Some(a) = after.get(name) {
                    *result.cpu_micros.entry(name.clone()).or_default() += a.saturating_sub(*b);
                }
            }
            result.elapsed += outcome.elapsed;
            for tally in outcome.tallies {
                result.absorb(tally).map_err(|e| LoadError::Histogram(e.to_string()))?;
            }
        }
    }
    for sessions in pools {
        let mut set = JoinSet::new();
        for s in sessions {
            set.spawn(s.close());
        }
        while set.join_next().await.is_some() {}
    }
    Ok(results)
}

fn cpu_snapshot(watched: &[Watched]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in watched {
        if let Ok(us) = procfs::cpu_micros(w.pid) {
            m.insert(w.name.clone(), us);
        }
    }
    if let Ok(us) = procfs::cpu_micros(std::process::id()) {
        m.insert("loadgen".into(), us);
    }
    m
}

async fn connect_all(target: &Target, cfg: &LoadConfig) -> Result<Vec<Session>, LoadError> {
    let mut set = JoinSet::new();
    for _ in 0..cfg.clients {
        let endpoint = target.endpoint.clone();
        let opts = SessionOptions { era: cfg.era, timeout: cfg.timeout, accept_sse: cfg.accept_sse };
        set.spawn(async move { Session::connect(&endpoint, opts).await });
    }
    let mut sessions = Vec::with_capacity(cfg.clients);
    while let Some(joined) = set.join_next().await {
        let session = joined
            .map_err(|e| LoadError::Task(e.to_string()))?
            .map_err(|error| LoadError::Handshake { target: target.name.clone(), error })?;
        sessions.push(session);
    }
    Ok(sessions)
}

/// What one client did in one phase.
struct ClientTally {
    calls: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    first_error: Option<String>,
    behind: u64,
    histogram: Histogram<u64>,
    last_done: Instant,
}

impl ClientTally {
    fn record(&mut self, outcome: Result<(), CallError>, from: Instant, done: Instant) {
        match outcome {
            Ok(()) => {
                self.calls += 1;
                let us = u64::try_from(done.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX);
                self.histogram.saturating_record(us.clamp(1, MAX_LATENCY_US));
            }
            Err(e) => {
                self.errors += 1;
                *self.error_kinds.entry(e.kind()).or_default() += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e.to_string());
                }
            }
        }
        self.last_done = done;
    }
}

struct PhaseOutcome {
    elapsed: Duration,
    tallies: Vec<ClientTally>,
}

/// Runs every session for `length`; returns the sessions and their tallies.
async fn phase(
    sessions: Vec<Session>,
    cfg: &LoadConfig,
    length: Duration,
    text: &Arc<str>,
    text_json: &Arc<str>,
) -> Result<(Vec<Session>, PhaseOutcome), LoadError> {
    let clients = sessions.len();
    // A common start shortly ahead, so that every task is spawned by then.
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + length;
    let mut set = JoinSet::new();
    for (k, session) in sessions.into_iter().enumerate() {
        let histogram = new_histogram().map_err(|e| LoadError::Histogram(e.to_string()))?;
        let tally = ClientTally {
            calls: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            first_error: None,
            behind: 0,
            histogram,
            last_done: start,
        };
        let (text, text_json) = (text.clone(), text_json.clone());
        let schedule = cfg.rate.map(|rate| Schedule::new(rate, clients, k));
        set.spawn(client_loop(session, tally, schedule, start, end, text, text_json));
    }
    let mut sessions = Vec::with_capacity(clients);
    let mut tallies = Vec::with_capacity(clients);
    let mut last = end;
    while let Some(joined) = set.join_next().await {
        let (session, tally) = joined.map_err(|e| LoadError::Task(e.to_string()))?;
        last = last.max(tally.last_done);
        sessions.push(session);
        tallies.push(tally);
    }
    Ok((sessions, PhaseOutcome { elapsed: last.saturating_duration_since(start), tallies }))
}

/// The send times of one client in an open-loop run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Offset of the client's first send from the start.
    pub offset: Duration,
    /// Time between two sends of the client.
    pub interval: Duration,
}

impl Schedule {
    /// Client `k` of `clients` sharing a total `rate` (calls/s).
    pub fn new(rate: f64, clients: usize, k: usize) -> Self {
        Schedule {
            offset: Duration::from_secs_f64(k as f64 / rate),
            interval: Duration::from_secs_f64(clients as f64 / rate),
        }
    }

    /// The `j`-th send time after `start`.
    pub fn at(&self, start: Instant, j: u64) -> Instant {
        let nanos = self.interval.as_nanos().saturating_mul(u128::from(j));
        start + self.offset + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX / 2))
    }
}

/// Errors in a closed loop are followed by this pause, so that a target
/// that fails fast does not turn the loop into a spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// A send later than this after its slot counts as behind schedule.
const BEHIND: Duration = Duration::from_millis(1);

async fn client_loop(
    mut session: Session,
    mut tally: ClientTally,
    schedule: Option<Schedule>,
    start: Instant,
    end: Instant,
    text: Arc<str>,
    text_json: Arc<str>,
) -> (Session, ClientTally) {
    match schedule {
        Some(schedule) => {
            let mut j = 0u64;
            loop {
                let slot = schedule.at(start, j);
                if slot >= end {
                    break;
                }
                j += 1;
                let now = Instant::now();
                let from = if now < slot {
                    tokio::time::sleep_until(slot).await;
                    // On time: measure from the actual send (timer lateness
                    // is the load generator's, not the target's).
                    Instant::now()
                } else {
                    // Behind: the wait for our own previous call counts.
                    if now.saturating_duration_since(slot) > BEHIND {
                        tally.behind += 1;
                    }
                    slot
                };
                let outcome = session.call_echo(&text_json, &text).await;
                tally.record(outcome, from, Instant::now());
            }
        }
        None => {
            tokio::time::sleep_until(start).await;
            loop {
                let from = Instant::now();
                if from >= end {
                    break;
                }
                let outcome = session.call_echo(&text_json, &text).await;
                let failed = outcome.is_err();
                tally.record(outcome, from, Instant::now());
                if failed {
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }
    (session, tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spreads_clients_over_the_rate() {
        // 2,000 calls/s over 64 clients: each sends every 32 ms, client k
        // starts k/2000 s (k × 0.5 ms) in.
        let s = Schedule::new(2000.0, 64, 3);
        assert_eq!(s.interval, Duration::from_millis(32));
        assert_eq!(s.offset, Duration::from_micros(1500));
        let start = Instant::now();
        assert_eq!(s.at(start, 2) - start, Duration::from_micros(1500 + 64_000));
    }

    #[test]
    fn schedule_total_rate() {
        // Over one second, all clients together are scheduled rate times.
        let (rate, clients) = (1000.0, 7);
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let mut n = 0;
        for k in 0..clients {
            let s = Schedule::new(rate, clients, k);
            let mut j = 0;
            while s.at(start, j) < end {
                n += 1;
                j += 1;
            }
        }
        assert!((999..=1001).contains(&n), "{n}");
    }
}
