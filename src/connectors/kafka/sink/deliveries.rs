//! The producer's delivery reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::common::Result;
use rdkafka::ClientContext;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{ProducerContext, ThreadedProducer};

use super::poisoned;

/// Counts acknowledgements, keeps the first delivery error and, per partition, the offset of
/// the first record delivered since [`Deliveries::take_offsets`].
#[derive(Default)]
pub struct Deliveries {
    pub(super) acked: AtomicU64,
    pub(super) error: Mutex<Option<String>>,
    offsets: Mutex<HashMap<i32, i64>>,
}

impl Deliveries {
    /// The first offset delivered per partition, since the last call.
    pub(super) fn take_offsets(&self) -> Result<HashMap<i32, i64>> {
        Ok(std::mem::take(
            &mut *self.offsets.lock().map_err(|_| poisoned())?,
        ))
    }
}

/// The producer context: hands delivery reports to [`Deliveries`].
pub struct DeliveryContext(pub(super) Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut offsets) = self.0.offsets.lock() {
                    let first = offsets.entry(message.partition()).or_insert(i64::MAX);
                    *first = (*first).min(message.offset());
                }
            }
            Err((e, _)) => {
                if let Ok(mut first) = self.0.error.lock()
                    && first.is_none()
                {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

pub(super) type KafkaProducer = ThreadedProducer<DeliveryContext>;
