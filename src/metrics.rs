//! Operator and job metrics, exposed in the Prometheus text format.
//!
//! Every partition of a stateful operator registers an [`OperatorSeries`] when the operator
//! driver starts it under a job, and updates it as it runs: rows in and out, late rows, the
//! current watermark, the state's rows and bytes. Every job with checkpoints has a
//! [`JobSeries`] for its last checkpoint's duration and size. The process keeps them in one
//! [`Registry`] ([`global`]); a series goes away with the partition or job that holds it.
//!
//! [`Registry::encode`] renders the live series with `prometheus-client` (the Prometheus
//! project's Rust client: names, types, label escaping, the OpenMetrics text format), which
//! `sabot serve --metrics-listen ADDR` serves at `/metrics`. Labels: `job`, and `operator`
//! (the plan node's stable id, as in checkpoints) and `partition` for operator series. The
//! watermark's lag behind the wall clock is computed at each scrape.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Content type of [`Registry::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics of one partition of an operator (see the module docs).
#[derive(Debug)]
pub struct OperatorSeries {
    job: u64,
    operator: String,
    partition: usize,
    rows_in: AtomicU64,
    rows_out: AtomicU64,
    late_rows: AtomicU64,
    /// Milliseconds since the epoch; `i64::MIN`: none yet.
    watermark: AtomicI64,
    state_rows: AtomicU64,
    state_bytes: AtomicU64,
}

impl OperatorSeries {
    /// Adds rows read.
    pub fn add_rows_in(&self, rows: usize) {
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Adds rows emitted.
    pub fn add_rows_out(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Adds late rows, dropped.
    pub fn add_late_rows(&self, rows: usize) {
        self.late_rows.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// The operator's watermark (milliseconds since the epoch).
    pub fn set_watermark(&self, watermark: i64) {
        self.watermark.store(watermark, Ordering::Relaxed);
    }

    /// The state's size.
    pub fn set_state(&self, rows: usize, bytes: usize) {
        self.state_rows.store(rows as u64, Ordering::Relaxed);
        self.state_bytes.store(bytes as u64, Ordering::Relaxed);
    }
}

/// The metrics of one job (see the module docs).
#[derive(Debug)]
pub struct JobSeries {
    job: u64,
    checkpoints: AtomicU64,
    /// Of the last checkpoint: f64 bits of its duration in seconds, and its state bytes.
    checkpoint_seconds: AtomicU64,
    checkpoint_bytes: AtomicU64,
}

impl JobSeries {
    /// A checkpoint completed in `seconds` with `bytes` of state.
    pub fn checkpoint_completed(&self, seconds: f64, bytes: u64) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_seconds
            .store(seconds.to_bits(), Ordering::Relaxed);
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// The live series of the process (see the module docs).
#[derive(Debug, Default)]
pub struct Registry {
    operators: Mutex<Vec<Weak<OperatorSeries>>>,
    jobs: Mutex<Vec<Weak<JobSeries>>>,
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static GLOBAL: OnceLock<Registry> = OnceLock::new();
    GLOBAL.get_or_init(Registry::default)
}

/// Keeps the live entries of `list` (dropping the others) and returns them.
fn live<T>(list: &Mutex<Vec<Weak<T>>>) -> Vec<Arc<T>> {
    let Ok(mut list) = list.lock() else {
        return Vec::new();
    };
    let mut alive = Vec::with_capacity(list.len());
    list.retain(|w| match w.upgrade() {
        Some(series) => {
            alive.push(series);
            true
        }
        None => false,
    });
    alive
}

impl Registry {
    /// A new series for partition `partition` of operator `operator` of job `job`.
    pub fn operator(&self, job: u64, operator: &str, partition: usize) -> Arc<OperatorSeries> {
        let series = Arc::new(OperatorSeries {
            job,
            operator: operator.to_string(),
            partition,
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late_rows: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            state_rows: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
        });
        if let Ok(mut all) = self.operators.lock() {
            all.push(Arc::downgrade(&series));
        }
        series
    }

    /// A new series for job `job`.
    pub fn job(&self, job: u64) -> Arc<JobSeries> {
        let series = Arc::new(JobSeries {
            job,
            checkpoints: AtomicU64::new(0),
            checkpoint_seconds: AtomicU64::new(0f64.to_bits()),
            checkpoint_bytes: AtomicU64::new(0),
        });
        if let Ok(mut all) = self.jobs.lock() {
            all.push(Arc::downgrade(&series));
        }
        series
    }

    /// Rows and bytes of state the live operators of job `job` hold.
    pub fn job_state(&self, job: u64) -> (u64, u64) {
        live(&self.operators)
            .iter()
            .filter(|s| s.job == job)
            .fold((0, 0), |(rows, bytes), s| {
                (
                    rows + s.state_rows.load(Ordering::Relaxed),
                    bytes + s.state_bytes.load(Ordering::Relaxed),
                )
            })
    }

    /// The live series in the OpenMetrics text format, with watermark lags measured against
    /// `now_ms` (milliseconds since the epoch).
    pub fn encode(&self, now_ms: i64) -> Result<String, fmt::Error> {
        let snapshot = Snapshot {
            operators: live(&self.operators),
            jobs: live(&self.jobs),
            now_ms,
        };
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// The series of one scrape.
#[derive(Debug)]
struct Snapshot {
    operators: Vec<Arc<OperatorSeries>>,
    jobs: Vec<Arc<JobSeries>>,
    now_ms: i64,
}

/// A sample value.
enum Value {
    Counter(u64),
    Gauge(f64),
}

type Labels = Vec<(&'static str, String)>;

fn operator_labels(s: &OperatorSeries) -> Labels {
    vec![
        ("job", s.job.to_string()),
        ("operator", s.operator.clone()),
        ("partition", s.partition.to_string()),
    ]
}

/// A watermark that is a point in time (neither "none yet" nor the end of a bounded input).
fn real_watermark(ms: i64) -> Option<i64> {
    (ms != i64::MIN && ms != i64::MAX).then_some(ms)
}

/// Encodes one metric family: `sample` gives each series' value, or `None` to leave it out.
fn family<T>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: &[(Labels, Arc<T>)],
    sample: impl Fn(&T) -> Option<Value>,
) -> fmt::Result {
    let samples: Vec<(&Labels, Value)> = series
        .iter()
        .filter_map(|(labels, s)| Some((labels, sample(s)?)))
        .collect();
    let Some((_, first)) = samples.first() else {
        return Ok(());
    };
    let metric_type = match first {
        Value::Counter(_) => MetricType::Counter,
        Value::Gauge(_) => MetricType::Gauge,
    };
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        let encoder = metric.encode_family(labels)?;
        match value {
            Value::Counter(v) => ConstCounter::new(v).encode(encoder)?,
            Value::Gauge(v) => ConstGauge::new(v).encode(encoder)?,
        }
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let ops: Vec<(Labels, Arc<OperatorSeries>)> = self
            .operators
            .iter()
            .map(|s| (operator_labels(s), Arc::clone(s)))
            .collect();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let e = &mut encoder;
        family(
            e,
            "sabot_operator_rows_in",
            "Rows the operator read.",
            &ops,
            |s| Some(Value::Counter(load(&s.rows_in))),
        )?;
        family(
            e,
            "sabot_operator_rows_out",
            "Rows the operator emitted.",
            &ops,
            |s| Some(Value::Counter(load(&s.rows_out))),
        )?;
        family(
            e,
            "sabot_operator_late_rows",
            "Rows dropped because every window holding them had fired.",
            &ops,
            |s| Some(Value::Counter(load(&s.late_rows))),
        )?;
        family(
            e,
            "sabot_operator_watermark_seconds",
            "The operator's watermark, seconds since the Unix epoch.",
            &ops,
            |s| {
                let ms = real_watermark(s.watermark.load(Ordering::Relaxed))?;
                Some(Value::Gauge(ms as f64 / 1000.0))
            },
        )?;
        family(
            e,
            "sabot_operator_watermark_lag_seconds",
            "How far the operator's watermark is behind the wall clock.",
            &ops,
            |s| {
                let ms = real_watermark(s.watermark.load(Ordering::Relaxed))?;
                Some(Value::Gauge(self.now_ms.saturating_sub(ms) as f64 / 1000.0))
            },
        )?;
        family(
            e,
            "sabot_operator_state_rows",
            "Rows (or groups) of state the operator holds in memory.",
            &ops,
            |s| Some(Value::Gauge(load(&s.state_rows) as f64)),
        )?;
        family(
            e,
            "sabot_operator_state_bytes",
            "Bytes of state the operator holds in memory.",
            &ops,
            |s| Some(Value::Gauge(load(&s.state_bytes) as f64)),
        )?;
        let jobs: Vec<(Labels, Arc<JobSeries>)> = self
            .jobs
            .iter()
            .map(|s| (vec![("job", s.job.to_string())], Arc::clone(s)))
            .collect();
        family(
            e,
            "sabot_job_checkpoints",
            "Checkpoints the job completed.",
            &jobs,
            |s| Some(Value::Counter(load(&s.checkpoints))),
        )?;
        family(
            e,
            "sabot_job_checkpoint_duration_seconds",
            "How long the job's last checkpoint took, from its barrier to its commits.",
            &jobs,
            |s| {
                (load(&s.checkpoints) > 0)
                    .then(|| Value::Gauge(f64::from_bits(load(&s.checkpoint_seconds))))
            },
        )?;
        family(
            e,
            "sabot_job_checkpoint_size_bytes",
            "Bytes of state in the job's last checkpoint.",
            &jobs,
            |s| (load(&s.checkpoints) > 0).then(|| Value::Gauge(load(&s.checkpoint_bytes) as f64)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_series_are_encoded_with_their_labels_and_dropped_ones_are_not() {
        let registry = Registry::default();
        let a = registry.operator(7, "WindowAggregateExec-0", 1);
        a.add_rows_in(100);
        a.add_rows_in(20);
        a.add_rows_out(3);
        a.add_late_rows(2);
        a.set_watermark(1_000_000);
        a.set_state(4, 512);
        let gone = registry.operator(7, "IntervalJoinExec-0", 0);
        gone.add_rows_in(5);
        drop(gone);
        let job = registry.job(7);
        job.checkpoint_completed(0.25, 4096);
        let text = registry.encode(1_003_500).unwrap();
        let labels = r#"{job="7",operator="WindowAggregateExec-0",partition="1"}"#;
        for line in [
            format!("sabot_operator_rows_in_total{labels} 120"),
            format!("sabot_operator_rows_out_total{labels} 3"),
            format!("sabot_operator_late_rows_total{labels} 2"),
            format!("sabot_operator_watermark_seconds{labels} 1000.0"),
            format!("sabot_operator_watermark_lag_seconds{labels} 3.5"),
            format!("sabot_operator_state_rows{labels} 4.0"),
            format!("sabot_operator_state_bytes{labels} 512.0"),
            r#"sabot_job_checkpoints_total{job="7"} 1"#.to_string(),
            r#"sabot_job_checkpoint_duration_seconds{job="7"} 0.25"#.to_string(),
            r#"sabot_job_checkpoint_size_bytes{job="7"} 4096.0"#.to_string(),
            "# TYPE sabot_operator_rows_in counter".to_string(),
            "# EOF".to_string(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(!text.contains("IntervalJoinExec"), "{text}");
        assert_eq!(registry.job_state(7), (4, 512));
        assert_eq!(registry.job_state(8), (0, 0));
    }

    #[test]
    fn a_watermark_not_yet_known_or_at_the_end_has_no_sample() {
        let registry = Registry::default();
        let a = registry.operator(1, "op", 0);
        let text = registry.encode(0).unwrap();
        assert!(!text.contains("watermark"), "{text}");
        a.set_watermark(i64::MAX);
        assert!(!registry.encode(0).unwrap().contains("watermark"));
    }
}
