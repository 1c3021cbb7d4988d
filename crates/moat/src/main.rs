//! `moat`: the gateway binary. `serve` runs it; `init` prepares a data dir;
//! the noun commands (`tenant`, `user`, `key`, `server`, `audit`) talk to a
//! running gateway's admin API.
#![forbid(unsafe_code)]

mod admin;
mod cli;
mod config;
mod scan;
mod serve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse_from(cli::normalise_args(std::env::args().collect())) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cli::FoundSomething>().is_some() => ExitCode::from(3),
        Err(e) => {
            if std::env::var("RUST_BACKTRACE").is_ok_and(|v| !v.is_empty() && v != "0") {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {}", one_line(&e));
            }
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}
