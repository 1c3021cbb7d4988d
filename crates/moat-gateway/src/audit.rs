//! The audit sink: every capability records metadata events here.
//!
//! Events go through a bounded channel to one writer task that appends them
//! in batches, off the request's hot path. Nothing is ever dropped: when the
//! channel is full, [`AuditSink::record`] waits (back-pressure instead of
//! loss), and when the database refuses a batch the writer keeps the batch
//! and retries with backoff. On shutdown the channel is closed and the
//! writer drains it before exiting.

use moat_store::{AuditEvent, Store};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CHANNEL: usize = 8192;
const BATCH: usize = 256;

/// Handle for recording events. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEvent>,
}

/// The writer task. [`AuditWriter::finish`] flushes what is queued and
/// stops it (call it once no request is in flight any more).
pub struct AuditWriter {
    handle: JoinHandle<()>,
    stop: CancellationToken,
}

impl AuditWriter {
    /// Writes every queued event, then stops the writer.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

impl AuditSink {
    /// Starts the writer task over `store`.
    pub fn start(store: Store) -> (Self, AuditWriter) {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(write_loop(store, rx, stop.clone()));
        (Self { tx }, AuditWriter { handle, stop })
    }

    /// Queues an event. Waits when the queue is full; never drops.
    pub async fn record(&self, event: AuditEvent) {
        if let Err(mpsc::error::SendError(ev)) = self.tx.send(event).await {
            // Only after shutdown: the writer is gone. Say so in the log
            // (metadata only) rather than lose the fact silently.
            tracing::error!(action = %ev.action, "audit sink closed; event not recorded");
        }
    }

    /// Queues an event from synchronous code or a drop path (spawns).
    pub fn record_detached(&self, event: AuditEvent) {
        let sink = self.clone();
        tokio::spawn(async move { sink.record(event).await });
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<AuditEvent>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                false
            }
            () = stop.cancelled() => true,
        };
        if stopping {
            // Drain whatever is queued, then end.
            while let Ok(ev) = rx.try_recv() {
                batch.push(ev);
            }
            if batch.is_empty() {
                return;
            }
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match store.append_audit(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!("moat_audit_write_failures_total").increment(1);
                    tracing::error!(error = %e, pending = batch.len(), "audit write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
        if stopping {
            return;
        }
    }
}
