//! Running streaming jobs: the shared job state, barrier injection and progress.
//!
//! - [`job_context`]: counters, barrier requests and acknowledgements shared by the operators
//!   of one job.
//! - [`job`]: starting a DataFrame as a job (physical planning with the job's context, the
//!   barrier timer) and reading its live statistics.

pub mod job;
pub mod job_context;
