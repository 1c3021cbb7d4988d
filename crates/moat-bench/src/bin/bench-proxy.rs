//! `bench-proxy`: a bare pass-through HTTP proxy built from moat's parts
//! (see `moat_bench::proxy`), the floor under moat's CPU per call. Prints
//! `listening on ADDR` on stdout once bound.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use axum::serve::ListenerExt as _;
use clap::Parser;

/// A pass-through proxy of `/mcp` to one upstream, for load tests.
#[derive(Parser, Debug)]
#[command(name = "bench-proxy", version)]
struct Args {
    /// Address to listen on; loopback only (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The upstream MCP endpoint, e.g. `http://127.0.0.1:PORT/mcp`.
    #[arg(long)]
    upstream: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        bail!("bench-proxy listens on loopback addresses only, not {}", args.listen.ip());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        let app = moat_bench::proxy::router(args.upstream)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
        drop(out);
        // As moat: never let Nagle's algorithm hold an answer back.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).with_graceful_shutdown(moat_bench::shutdown_signal()).await.context("serving")
    })
}
