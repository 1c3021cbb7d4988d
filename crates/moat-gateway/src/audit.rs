//! The audit sink: every capability records metadata events here.
//!
//! Events go through a bounded channel to one writer task that appends them
//! in batches (gathered for up to 10 ms), off the request's hot path. Nothing is ever dropped: when the
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
/// How long the writer waits for more events after the first of a batch:
/// at thousands of calls a second this turns one transaction per event (a
/// hand-off to SQLite's worker thread and a WAL write each) into one per
/// few dozen events; an event becomes visible at most this much later.
const LINGER: Duration = Duration::from_millis(10);

/// What travels to the writer: an event, or a request to write everything
/// queued so far and say when it is done. Nearly every message is an event,
/// so the event is not boxed (a box would cost an allocation per event).
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(AuditEvent),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Handle for recording events. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Msg>,
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
        if let Err(mpsc::error::SendError(Msg::Event(ev))) = self.tx.send(Msg::Event(event)).await {
            // Only after shutdown: the writer is gone. Say so in the log
            // (metadata only) rather than lose the fact silently.
            tracing::error!(action = %ev.action, "audit sink closed; event not recorded");
        }
    }

    /// Waits until every event recorded before this call is written (so a
    /// reader of the trail sees its own and everyone's earlier events).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Queues an event from synchronous code or a drop path (spawns).
    pub fn record_detached(&self, event: AuditEvent) {
        let sink = self.clone();
        tokio::spawn(async move { sink.record(event).await });
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Msg>, stop: CancellationToken) {
    let mut inbox = Vec::with_capacity(BATCH);
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut inbox, BATCH) => {
                if n == 0 {
                    return;
                }
                false
            }
            () = stop.cancelled() => true,
        };
        let flush_asked = |inbox: &[Msg]| inbox.iter().any(|m| matches!(m, Msg::Flush(_)));
        if stopping {
            // Drain whatever is queued, then end.
            while let Ok(m) = rx.try_recv() {
                inbox.push(m);
            }
        } else if !flush_asked(&inbox) {
            let deadline = tokio::time::Instant::now() + LINGER;
            while inbox.len() < BATCH && !flush_asked(&inbox) {
                let room = BATCH - inbox.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut inbox, room)).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        for m in inbox.drain(..) {
            match m {
                Msg::Event(ev) => batch.push(ev),
                Msg::Flush(done) => waiting.push(done),
            }
        }
        if !batch.is_empty() {
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
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use moat_store::{AuditQuery, AuditResult};

    #[tokio::test]
    async fn flush_makes_every_earlier_event_visible() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let (sink, writer) = AuditSink::start(store.clone());
        for _ in 0..3 {
            sink.record(AuditEvent::new("human", "test.flush", AuditResult::Ok)).await;
        }
        sink.flush().await;
        assert_eq!(store.list_audit(&AuditQuery::default()).await.unwrap().len(), 3);
        sink.record(AuditEvent::new("human", "test.flush", AuditResult::Ok)).await;
        writer.finish().await;
        assert_eq!(store.list_audit(&AuditQuery::default()).await.unwrap().len(), 4, "finish drains the queue");
    }
}
