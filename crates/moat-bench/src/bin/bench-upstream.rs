//! `bench-upstream`: a fast MCP server for load tests (see
//! `moat_bench::upstream`). Prints `listening on ADDR` on stdout once bound.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use axum::serve::ListenerExt as _;
use clap::Parser;

/// A minimal, fast MCP server (Streamable HTTP, POST /mcp) for load tests.
#[derive(Parser, Debug)]
#[command(name = "bench-upstream", version)]
struct Args {
    /// Address to listen on; loopback only (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Answer `server/discover` (2026-07-28), so that clients that probe use
    /// the stateless era; without it they fall back to `initialize`.
    #[arg(long)]
    modern: bool,
    /// Tokio worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        bail!("bench-upstream listens on loopback addresses only, not {}", args.listen.ip());
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
        drop(out);
        let app = moat_bench::upstream::router(moat_bench::upstream::Options { modern: args.modern });
        // Answers are one small write each, but never let Nagle's algorithm
        // hold one back waiting for an ACK.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).with_graceful_shutdown(moat_bench::shutdown_signal()).await.context("serving")
    })
}
