//! Reading a memory table live: its rows now, then every change made to it (an INSERT, UPDATE
//! or DELETE, or the changelog of the job filling a materialized view), as a changelog that
//! never ends. A materialized view's job reads its memory tables so, and keeps its view up to
//! date as they change (as a RisingWave table feeds its materialized views); other queries
//! read a snapshot.
//!
//! **Order.** A change is published to the table's readers while the table is locked for it,
//! and a reader subscribes while the table is locked for reading its rows: each reader sees
//! every change after its snapshot, exactly once, in the order they were made.
//!
//! **Waiting for views (`FLUSH`).** Every change gets a number from one process-wide sequence.
//! A reader records the number of the last change it handed on to its job
//! ([`caught_up`]); a view's table records the checkpoint barriers all its writers passed
//! ([`MemoryStore::barrier_passed`](super::MemoryStore::barrier_passed)). A barrier injected
//! into a job once its readers have handed on every change follows those changes through the
//! job, so when the view's writers pass it, the view holds their effect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::Int8Array;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use tokio::sync::mpsc;

use super::MemoryStore;
use crate::connectors::{SourceBatch, SourceReader};

/// The number of the last change made to any memory table.
static LAST_CHANGE: AtomicU64 = AtomicU64::new(0);

/// Every live reader's progress, to wait on (dropped readers' entries are skipped).
static READERS: Mutex<Vec<Weak<Progress>>> = Mutex::new(Vec::new());

/// One change of a table, as its readers get it.
#[derive(Debug, Clone)]
pub(super) struct Change {
    seq: u64,
    batch: RecordBatch,
    /// `None`: every row is inserted.
    kinds: Option<Int8Array>,
}

/// How far a reader got.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The last change published to it.
    published: AtomicU64,
    /// The last change it handed on to its job.
    handed_on: AtomicU64,
}

/// A reader's end of a table's changes.
#[derive(Debug)]
pub(super) struct Subscriber {
    tx: mpsc::UnboundedSender<Change>,
    progress: Arc<Progress>,
}

/// The changes a table sends its readers.
#[derive(Debug, Default)]
pub(super) struct Publisher {
    subscribers: Vec<Subscriber>,
}

impl Publisher {
    /// Sends a change to every reader (forgetting those that went away). Called with the
    /// table locked for writing.
    pub fn publish(&mut self, batch: &RecordBatch, kinds: Option<&Int8Array>) {
        if self.subscribers.is_empty() || batch.num_rows() == 0 {
            return;
        }
        let seq = LAST_CHANGE.fetch_add(1, Ordering::SeqCst) + 1;
        self.subscribers.retain(|s| {
            s.progress.published.store(seq, Ordering::SeqCst);
            s.tx.send(Change {
                seq,
                batch: batch.clone(),
                kinds: kinds.cloned(),
            })
            .is_ok()
        });
    }

    /// A new reader, whose snapshot holds `snapshot_rows` rows. Called with the table locked
    /// (for reading its rows). The snapshot counts as a change of its own (its number is
    /// returned), so that a reader still reading it is not caught up.
    pub fn subscribe(
        &mut self,
        snapshot_rows: usize,
    ) -> (mpsc::UnboundedReceiver<Change>, Arc<Progress>, u64) {
        let (tx, rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Progress::default());
        let snapshot = if snapshot_rows > 0 {
            let seq = LAST_CHANGE.fetch_add(1, Ordering::SeqCst) + 1;
            progress.published.store(seq, Ordering::SeqCst);
            seq
        } else {
            0
        };
        if let Ok(mut readers) = READERS.lock() {
            readers.retain(|r| r.strong_count() > 0);
            readers.push(Arc::downgrade(&progress));
        }
        self.subscribers.push(Subscriber {
            tx,
            progress: Arc::clone(&progress),
        });
        (rx, progress, snapshot)
    }
}

/// The number of the last change made to any memory table so far.
pub fn last_change() -> u64 {
    LAST_CHANGE.load(Ordering::SeqCst)
}

/// True once every live reader has handed on to its job every change published to it up to
/// change `target` (later ones need not have passed: tables that keep changing do not hold up
/// a FLUSH). Readers that went away (their job ended) count as caught up.
pub fn caught_up(target: u64) -> bool {
    let Ok(readers) = READERS.lock() else {
        return true;
    };
    readers.iter().filter_map(Weak::upgrade).all(|p| {
        p.handed_on.load(Ordering::SeqCst) >= p.published.load(Ordering::SeqCst).min(target)
    })
}

/// A live reader of `store`: its rows now (`projection` of them, in chunks of `batch_size`),
/// then every change made to it.
pub(super) fn reader(
    store: &MemoryStore,
    projection: &[usize],
    batch_size: usize,
) -> Result<Box<dyn SourceReader>> {
    let (rows, (changes, progress, snapshot)) = store.subscribe()?;
    let mut chunks = super::chunks(rows, projection, batch_size)?;
    chunks.reverse();
    Ok(Box::new(LiveReader {
        chunks,
        changes,
        progress,
        projection: projection.to_vec(),
        last: snapshot,
    }))
}

struct LiveReader {
    /// The snapshot's remaining chunks, last first.
    chunks: Vec<RecordBatch>,
    changes: mpsc::UnboundedReceiver<Change>,
    progress: Arc<Progress>,
    projection: Vec<usize>,
    /// The last change returned, or the snapshot's number (handed on by the time the next
    /// batch is asked for).
    last: u64,
}

impl Drop for LiveReader {
    /// A reader that went away (its job ended) holds up no FLUSH.
    fn drop(&mut self) {
        self.progress.handed_on.store(u64::MAX, Ordering::SeqCst);
    }
}

#[async_trait]
impl SourceReader for LiveReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        if let Some(chunk) = self.chunks.pop() {
            return Ok(Some(SourceBatch::new(chunk)));
        }
        // The source asks for the next batch once it took the last one.
        self.progress.handed_on.store(self.last, Ordering::SeqCst);
        // `None`: the table was dropped.
        let Some(change) = self.changes.recv().await else {
            return Ok(None);
        };
        self.last = change.seq;
        let batch = change.batch.project(&self.projection)?;
        Ok(Some(SourceBatch::new(batch).with_kinds(change.kinds)))
    }
}
