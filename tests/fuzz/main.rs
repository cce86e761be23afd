//! Fuzz targets: random inputs, structured by `arbitrary`, against the whole engine, each for
//! a bounded time (`SABOT_FUZZ_SECONDS`, a few seconds by default; `scripts/test` gives each
//! about a minute), with two fixed seeds and one that changes per run (printed, and replayed
//! with `SABOT_FUZZ_SEED`).
//!
//! - [`sql`]: SQL text, generated from the grammar and mutated from `sqllogictest/`.
//! - [`wire`]: Postgres wire frames against a running server.
//! - [`records`]: JSON, CSV and raw records, Kafka keys, headers and timestamps.
//! - [`checkpoints`]: truncated, bit-flipped and deleted checkpoint files.
//!
//! Every failure found becomes a regression test next to the code it fixed.

mod checkpoints;
mod harness;
mod records;
mod sql;
mod wire;
