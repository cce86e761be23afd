//! Tests of the `datagen` connector, grouped by what they exercise.

mod fixtures;
mod options;
mod reading;
mod values;
