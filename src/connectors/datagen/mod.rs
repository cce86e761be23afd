//! `datagen`: a source of generated rows, after Flink's `datagen` connector.
//!
//! Every physical column of the table is generated, either as a *sequence* (`start`, `start + 1`,
//! ..., `end`) or as *random* values. Computed columns are evaluated by the source as usual;
//! metadata columns are rejected (datagen has no record metadata).
//!
//! ```sql
//! CREATE TABLE orders (
//!     id BIGINT, customer INT, note VARCHAR, price DOUBLE, ts TIMESTAMP(3),
//!     WATERMARK FOR ts AS ts - INTERVAL '5' SECOND
//! ) WITH (
//!     'connector' = 'datagen',
//!     'rows-per-second' = '1000',
//!     'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '1000000',
//!     'fields.customer.min' = '1', 'fields.customer.max' = '100',
//!     'fields.note.length' = '12',
//!     'fields.ts.max-past' = '5 s'
//! );
//! ```
//!
//! # Options
//!
//! | key | default | meaning |
//! |-----|---------|---------|
//! | `rows-per-second` | `10000` | rate limit in real time, over all partitions together; `0` = unlimited |
//! | `number-of-rows` | unbounded | total rows over all partitions; makes the source bounded |
//! | `seed` | `0` | seed of the random values |
//! | `fields.<col>.kind` | `random` | `sequence` or `random` |
//! | `fields.<col>.start`, `.end` | required for sequences | inclusive bounds (integers) of a sequence |
//! | `fields.<col>.min`, `.max` | see below | inclusive bounds of random numbers |
//! | `fields.<col>.length` | `100` | length of random strings (at most 65536) |
//! | `fields.<col>.max-past` | `0` | random timestamps/dates lie in `[now - max-past, now]` (a duration, e.g. `'5 s'`) |
//! | `fields.<col>.null-rate` | `0` | fraction of NULLs, `0.0..=1.0` (the column must be nullable) |
//!
//! `<col>` is the column name (matched exactly, else case-insensitively); a column whose name
//! contains a `.` cannot be configured. Options that do not apply to a column (a `min` on a
//! string, `start` on a random column, `length` on a number, ...) are plan errors, as are options
//! naming an unknown or computed column.
//!
//! # Types
//!
//! * Integers (`TINYINT` .. `BIGINT`, unsigned too): sequence or random; random `min`/`max`
//!   default to the type's full range.
//! * `FLOAT`, `DOUBLE`: sequence (integer `start`/`end`) or random, uniform in `[min, max)`.
//!   Flink defaults to the type's whole range, which is useless in practice (nearly every value is
//!   astronomically large), so here `min` defaults to `0` and `max` to `1000`.
//! * `DECIMAL(p, s)` (Decimal128): sequence (integer `start`/`end`) or random with decimal
//!   `min`/`max` (default: the full range of the precision), uniform over the representable values.
//! * `BOOLEAN`: random only.
//! * `VARCHAR` / `STRING` (Utf8, LargeUtf8, Utf8View): random lowercase letters and digits of
//!   `length` characters, or a sequence of integers as text (`'1'`, `'2'`, ...).
//! * `TIMESTAMP` (any unit, any time zone) and `DATE`: random only, in `[now - max-past, now]`
//!   of the wall clock at generation time.
//!
//! Any other type is a plan error naming the column; declare such columns as computed columns.
//!
//! # Boundedness
//!
//! The source is bounded if `number-of-rows` is set or any column is a sequence. It then ends
//! after `min(number-of-rows, end - start + 1 of every sequence)` rows: the first exhausted
//! sequence ends the table.
//!
//! # Determinism
//!
//! Rows are numbered globally `0, 1, 2, ...`. A sequence column holds `start + r` in row `r`. A
//! random value (and the decision whether it is NULL) is a pure function of `(seed, column
//! index, r)`, computed by a counter-based SplitMix64 hash: no generator state is threaded from
//! row to row, so a row's values do not depend on parallelism, batch sizes or projection, and a
//! rerun with the same seed produces the same table. (Random timestamps and dates are the
//! exception: they are relative to the wall clock.) Random strings are slices, at hash-chosen
//! offsets, of a 64 KiB pseudo-random pool built once per process.
//!
//! # Partitions
//!
//! The scan has `parallelism` partitions (fewer if the table has fewer rows). Partition `p` of
//! `n` produces the rows `p, p + n, p + 2n, ...`, so the union of the partitions is exactly the
//! table a single partition produces. The rate is split among the partitions (each gets
//! `rows-per-second / n`, the remainder going to the first ones, at least 1 row per second).
//!
//! # Rate limiting
//!
//! Each reader schedules its `i`-th row at `start + i / rate`, where `start` is the instant of
//! its first read, and sleeps until the last row of a batch is due: output never runs ahead of
//! the rate. With a rate limit a batch holds at most ~100 ms worth of rows, so rows trickle out
//! smoothly. A reader that falls more than one second behind (a slow consumer) re-bases its
//! schedule instead of bursting to catch up.
//!
//! # Layout
//!
//! * `options`: the option specs and the validation of each column's `fields.<col>.*` options.
//! * `values`: what each column type takes and how a column's values are generated.
//! * `random`: the counter-based SplitMix64 draws and the random string pool.
//! * `connector`: [`DatagenConnector`], the table's source: boundedness, partitions, projection.
//! * `reader`: one partition's reader and its rate limiting.

mod connector;
mod options;
mod random;
mod reader;
#[cfg(test)]
mod tests;
mod values;

pub use connector::{DatagenConnector, build};
pub use options::DATAGEN_OPTIONS;
