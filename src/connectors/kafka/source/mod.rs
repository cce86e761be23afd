//! Reading Kafka partitions into Arrow batches (see the module docs of [`super`]).
//!
//! - [`connector`]: the table's source side; partitions are found once and dealt to readers.
//! - `reader`: one reader's thread: poll, decode (or normalize upserts), hand over batches with
//!   the positions checkpoints store; its restore and restored position.
//! - `plan`: what a reader reads: its plan, its partitions (splits), and where each read
//!   starts and (bounded) stops.

mod connector;
mod plan;
mod reader;

pub use connector::KafkaSource;
pub(crate) use reader::is_blank;
