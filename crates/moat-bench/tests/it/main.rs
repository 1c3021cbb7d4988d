//! Integration tests: the upstream over a real socket, and the load
//! generator against it.

// Test helpers outside `#[test]` functions panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod load;
mod upstream;

use std::net::SocketAddr;

/// Serves the bench upstream on a free loopback port.
pub async fn start_upstream(modern: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = moat_bench::upstream::router(moat_bench::upstream::Options { modern });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
