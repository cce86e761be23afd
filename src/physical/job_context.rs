//! `JobContext`: what the operators of one running job share.
//!
//! A job's physical plan runs with a `JobContext` in its `TaskContext` (a session-config
//! extension). Sources read barrier requests from it, every operator reports progress into it
//! (events read, late rows, source watermarks), and sinks acknowledge barriers to it. A plan
//! executed without one (a plain `collect` by an embedder) simply runs without barriers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use datafusion::execution::TaskContext;
use tokio::sync::watch;

use crate::checkpoint::coordinator::Checkpointing;
use crate::metrics::{JobSeries, OperatorSeries};
use crate::physical::message::{END_OF_TIME, NO_WATERMARK};

/// Counters of a running job, readable while it runs.
#[derive(Debug, Default)]
pub struct JobStats {
    events_in: AtomicU64,
    late_rows: AtomicU64,
    rows_out: AtomicU64,
    malformed_records: AtomicU64,
    source_watermarks: Mutex<Vec<Arc<AtomicI64>>>,
    /// Window lags, recorded only once a benchmark asked for them.
    window_lags: OnceLock<Mutex<Vec<i64>>>,
}

/// At most this many window lags are kept (the first ones of a run).
const MAX_WINDOW_LAGS: usize = 1 << 20;

impl JobStats {
    /// Rows read by all sources.
    pub fn events_in(&self) -> u64 {
        self.events_in.load(Ordering::Relaxed)
    }

    /// Rows dropped because their window had already fired.
    pub fn late_rows(&self) -> u64 {
        self.late_rows.load(Ordering::Relaxed)
    }

    /// Rows written by sinks or returned to the client.
    pub fn rows_out(&self) -> u64 {
        self.rows_out.load(Ordering::Relaxed)
    }

    /// Records skipped because they could not be decoded (with `*.ignore-parse-errors`).
    pub fn malformed_records(&self) -> u64 {
        self.malformed_records.load(Ordering::Relaxed)
    }

    /// Adds read rows.
    pub fn add_events_in(&self, n: u64) {
        self.events_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds late rows.
    pub fn add_late_rows(&self, n: u64) {
        self.late_rows.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds output rows.
    pub fn add_rows_out(&self, n: u64) {
        self.rows_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds skipped malformed records.
    pub fn add_malformed_records(&self, n: u64) {
        self.malformed_records.fetch_add(n, Ordering::Relaxed);
    }

    /// Registers a source partition; the returned cell holds its watermark.
    pub fn register_source_partition(&self) -> Arc<AtomicI64> {
        let cell = Arc::new(AtomicI64::new(NO_WATERMARK));
        if let Ok(mut all) = self.source_watermarks.lock() {
            all.push(Arc::clone(&cell));
        }
        cell
    }

    /// Minimum watermark over the source partitions that have not finished.
    /// Asks sinks to record window lags (see [`JobStats::record_window_ends`]); benchmarks do,
    /// so that ordinary jobs pay nothing for it.
    pub fn record_window_lags(&self) {
        let _ = self.window_lags.set(Mutex::new(Vec::new()));
    }

    /// Whether sinks should report window ends.
    pub fn records_window_lags(&self) -> bool {
        self.window_lags.get().is_some()
    }

    /// Sinks report the window ends of the rows they write: each distinct end's lag behind
    /// the sources' watermark (event-time milliseconds), the engine's delay between a window
    /// closing at the sources and its row leaving. Nothing is recorded unless asked for, nor
    /// before the first or after the final watermark.
    pub fn record_window_ends(&self, mut ends: Vec<i64>) {
        let Some(lags) = self.window_lags.get() else {
            return;
        };
        let watermark = self.watermark();
        if watermark == NO_WATERMARK || watermark == END_OF_TIME || ends.is_empty() {
            return;
        }
        ends.sort_unstable();
        ends.dedup();
        if let Ok(mut lags) = lags.lock() {
            let room = MAX_WINDOW_LAGS.saturating_sub(lags.len());
            lags.extend(ends.iter().take(room).map(|end| watermark - end));
        }
    }

    /// The window lags recorded so far (see [`JobStats::record_window_ends`]).
    pub fn window_lags(&self) -> Vec<i64> {
        self.window_lags
            .get()
            .and_then(|l| l.lock().ok().map(|l| l.clone()))
            .unwrap_or_default()
    }

    pub fn watermark(&self) -> i64 {
        let Ok(all) = self.source_watermarks.lock() else {
            return NO_WATERMARK;
        };
        let live = all
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|w| *w != END_OF_TIME);
        match live.min() {
            Some(w) => w,
            None if all.is_empty() => NO_WATERMARK,
            None => END_OF_TIME,
        }
    }
}

/// Shared state of one running job (see the module docs).
#[derive(Debug)]
pub struct JobContext {
    /// Job number.
    pub job_id: u64,
    /// Live counters.
    pub stats: JobStats,
    /// The job's series in the process's metrics.
    pub metrics: Arc<JobSeries>,
    barrier_requests: watch::Sender<u64>,
    sink_partitions: AtomicUsize,
    acks: Mutex<HashMap<u64, usize>>,
    completed_epoch: AtomicU64,
    checkpointing: OnceLock<Arc<Checkpointing>>,
    /// Held while a barrier is requested ([`Self::request_barrier`]).
    barrier_request: std::sync::Mutex<()>,
    operator_ids: OnceLock<HashMap<usize, String>>,
}

impl JobContext {
    /// A new job context with no barrier requested yet.
    pub fn new(job_id: u64) -> Self {
        let (barrier_requests, _) = watch::channel(0);
        Self {
            job_id,
            stats: JobStats::default(),
            metrics: crate::metrics::global().job(job_id),
            barrier_requests,
            sink_partitions: AtomicUsize::new(0),
            acks: Mutex::new(HashMap::new()),
            completed_epoch: AtomicU64::new(0),
            checkpointing: OnceLock::new(),
            barrier_request: std::sync::Mutex::new(()),
            operator_ids: OnceLock::new(),
        }
    }

    /// Attaches the checkpoint coordinator; barriers continue from its restored epoch.
    pub fn set_checkpointing(&self, checkpointing: Arc<Checkpointing>) {
        checkpointing.set_metrics(Arc::clone(&self.metrics));
        let base = checkpointing.restored_epoch();
        self.barrier_requests.send_replace(base);
        self.completed_epoch.store(base, Ordering::SeqCst);
        let _ = self.checkpointing.set(checkpointing);
    }

    /// The checkpoint coordinator, when the job checkpoints to a state directory.
    pub fn checkpointing(&self) -> Option<&Arc<Checkpointing>> {
        self.checkpointing.get()
    }

    /// Records the stable ids of the plan's nodes, keyed by node address.
    pub fn set_operator_ids(&self, ids: HashMap<usize, String>) {
        let _ = self.operator_ids.set(ids);
    }

    /// The stable id of the plan node at `node` (its address), if known.
    pub fn operator_id<T: ?Sized>(&self, node: &T) -> Option<&str> {
        let address = node as *const T as *const () as usize;
        self.operator_ids.get()?.get(&address).map(String::as_str)
    }

    /// A new metrics series for partition `partition` of the plan node at `node`.
    pub fn operator_series<T: ?Sized>(
        &self,
        node: &T,
        partition: usize,
    ) -> Option<Arc<OperatorSeries>> {
        let operator = self.operator_id(node)?;
        Some(crate::metrics::global().operator(self.job_id, operator, partition))
    }

    /// The last barrier epoch requested.
    pub fn current_epoch(&self) -> u64 {
        *self.barrier_requests.borrow()
    }

    /// The job context of a task, if it runs inside a job.
    pub fn of(task: &TaskContext) -> Option<Arc<JobContext>> {
        task.session_config().get_extension::<JobContext>()
    }

    /// Injects the next barrier now, as the periodic checkpoints do (beginning its checkpoint
    /// first when the job checkpoints); returns its epoch, or `None` while the previous
    /// checkpoint still runs.
    pub fn request_barrier(&self) -> Option<u64> {
        // One request at a time (the periodic checkpoints and FLUSH): the checkpoint begun is
        // the barrier injected.
        let _one = self.barrier_request.lock();
        let epoch = self.current_epoch() + 1;
        if let Some(c) = self.checkpointing()
            && !c.begin(epoch)
        {
            return None;
        }
        Some(self.inject_barrier())
    }

    /// Asks every source to emit the barrier of the next epoch; returns that epoch.
    pub fn inject_barrier(&self) -> u64 {
        let mut epoch = 0;
        self.barrier_requests.send_modify(|e| {
            *e += 1;
            epoch = *e;
        });
        epoch
    }

    /// A receiver of barrier requests for a source partition.
    pub fn barrier_requests(&self) -> watch::Receiver<u64> {
        self.barrier_requests.subscribe()
    }

    /// Registers one sink partition that will acknowledge every barrier.
    pub fn register_sink_partition(&self) {
        self.sink_partitions.fetch_add(1, Ordering::SeqCst);
    }

    /// A sink partition received barrier `epoch` after writing everything before it.
    pub fn acknowledge_barrier(&self, epoch: u64) {
        let expected = self.sink_partitions.load(Ordering::SeqCst);
        let Ok(mut acks) = self.acks.lock() else {
            return;
        };
        let count = acks.entry(epoch).or_insert(0);
        *count += 1;
        if *count >= expected {
            acks.remove(&epoch);
            self.completed_epoch.fetch_max(epoch, Ordering::SeqCst);
        }
    }

    /// Highest epoch whose barrier reached every sink partition.
    pub fn completed_epoch(&self) -> u64 {
        self.completed_epoch.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_completes_when_every_sink_partition_acknowledged() {
        let job = JobContext::new(1);
        job.register_sink_partition();
        job.register_sink_partition();
        let epoch = job.inject_barrier();
        assert_eq!(epoch, 1);
        job.acknowledge_barrier(1);
        assert_eq!(job.completed_epoch(), 0);
        job.acknowledge_barrier(1);
        assert_eq!(job.completed_epoch(), 1);
    }

    #[test]
    fn window_lags_are_recorded_only_when_asked_for() {
        let stats = JobStats::default();
        let source = stats.register_source_partition();
        source.store(10_000, Ordering::Relaxed);
        stats.record_window_ends(vec![9_000]);
        assert!(stats.window_lags().is_empty());
        stats.record_window_lags();
        // One lag per distinct end: the watermark minus the end.
        stats.record_window_ends(vec![9_000, 8_000, 9_000]);
        assert_eq!(stats.window_lags(), vec![2_000, 1_000]);
    }

    #[test]
    fn job_watermark_is_minimum_of_live_sources() {
        let stats = JobStats::default();
        assert_eq!(stats.watermark(), NO_WATERMARK);
        let a = stats.register_source_partition();
        let b = stats.register_source_partition();
        a.store(10, Ordering::Relaxed);
        b.store(20, Ordering::Relaxed);
        assert_eq!(stats.watermark(), 10);
        a.store(END_OF_TIME, Ordering::Relaxed);
        assert_eq!(stats.watermark(), 20);
        b.store(END_OF_TIME, Ordering::Relaxed);
        assert_eq!(stats.watermark(), END_OF_TIME);
    }
}
