//! `StateMemory`: the memory an operator's state holds, reserved in DataFusion's memory pool.
//!
//! Every query and job of a session draws on one pool (`sabot serve --memory-limit`; by
//! default a share of the machine's memory). DataFusion's own operators (sorts, hash
//! aggregates and joins of batch queries) reserve what they hold; streaming operators keep
//! state for as long as windows are open, so they reserve its size too, after every message.
//! A reservation the pool cannot grant fails the job with `ResourcesExhausted` (SQLSTATE
//! 53200), naming the operator, instead of the process running out of memory and taking every
//! session and job with it.

use datafusion::common::Result;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};

/// See the module docs.
#[derive(Debug)]
pub struct StateMemory {
    reservation: MemoryReservation,
}

impl StateMemory {
    /// A reservation of `operator`'s partition `partition` in the session's pool.
    pub fn new(context: &TaskContext, operator: &str, partition: usize) -> Self {
        Self {
            reservation: MemoryConsumer::new(format!("{operator}[{partition}]"))
                .register(context.memory_pool()),
        }
    }

    /// The state now holds `bytes`: grows (or shrinks) the reservation; an error when the
    /// pool's limit would be exceeded.
    pub fn track(&mut self, bytes: usize) -> Result<()> {
        if bytes == self.reservation.size() {
            return Ok(());
        }
        self.reservation.try_resize(bytes).map_err(|e| {
            DataFusionError::Context(
                format!(
                    "{} holds {} MiB of state, more than the memory limit allows (sabot serve \
                     --memory-limit, sabot run --memory-limit); keep less state (shorter \
                     windows, fewer keys), use 'state.backend' = 'rocksdb', or raise the limit",
                    self.reservation.consumer().name(),
                    bytes >> 20
                ),
                Box::new(e),
            )
        })
    }
}
