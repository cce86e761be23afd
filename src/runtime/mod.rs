//! Running streaming jobs: starting a DataFrame as a job and reading its progress.
//!
//! - [`job`]: physical planning with the job's context
//!   ([`JobContext`](crate::physical::job_context::JobContext), which the operators share), the
//!   checkpoint coordinator, the barrier timer, and the job's live statistics.

pub mod job;
