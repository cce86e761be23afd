//! `StreamFilterExec`: WHERE / HAVING inside a streaming pipeline.
//!
//! Stateless. Keeps the rows for which the predicate is true (and their per-row watermarks),
//! then applies the optional column projection DataFusion may have folded into the filter.
//! Watermarks, idleness and barriers pass through unchanged and in order.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::message::{MessageStream, StreamBatch};
use super::streaming::{StreamingExec, data_only, execute_input, fmt_changelog, map_data};
use crate::physical::window_spec::WindowField;

/// Streaming filter (see the module docs).
#[derive(Debug)]
pub struct StreamFilterExec {
    input: Arc<dyn ExecutionPlan>,
    predicate: Arc<dyn PhysicalExpr>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl StreamFilterExec {
    /// The streaming equivalent of a stock `FilterExec` (same input, predicate, projection).
    pub fn from_filter(filter: &FilterExec) -> Self {
        Self {
            input: Arc::clone(filter.input()),
            predicate: Arc::clone(filter.predicate()),
            projection: filter.projection().as_ref().map(|p| p.to_vec()),
            properties: Arc::clone(filter.properties()),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for StreamFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamFilterExec: {}", self.predicate)?;
        if let Some(p) = &self.projection {
            write!(f, ", projection={p:?}")?;
        }
        fmt_changelog(f, &self.input)
    }
}

impl ExecutionPlan for StreamFilterExec {
    fn name(&self) -> &str {
        "StreamFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.predicate)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("StreamFilterExec needs exactly one child");
        };
        Ok(Arc::new(Self {
            properties: super::streaming::follow_partitions(&self.properties, &input),
            input,
            predicate: Arc::clone(&self.predicate),
            projection: self.projection.clone(),

            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(data_only(
            self.schema(),
            self.execute_stream(partition, context)?,
        ))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl StreamFilterExec {
    /// The output columns showing input column `i` (itself without a projection).
    fn output_positions(&self, i: usize) -> Vec<usize> {
        match &self.projection {
            None => vec![i],
            Some(p) => (0..p.len()).filter(|&o| p[o] == i).collect(),
        }
    }
}

impl StreamingExec for StreamFilterExec {
    /// Row by row: each row keeps its kind.
    fn accepts_changes(&self) -> bool {
        true
    }

    /// The input's window columns, where the filter's projection puts them.
    fn window_columns(&self) -> std::collections::HashMap<usize, WindowField> {
        super::streaming::window_columns(&self.input)
            .into_iter()
            .flat_map(|(i, w)| self.output_positions(i).into_iter().map(move |o| (o, w)))
            .collect()
    }

    /// The input's event-time columns, where the filter's projection puts them.
    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        super::streaming::time_attributes(&self.input)
            .into_iter()
            .flat_map(|i| self.output_positions(i))
            .collect()
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.input, partition, context)?;
        let predicate = Arc::clone(&self.predicate);
        let projection = self.projection.clone();
        let schema = self.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        Ok(map_data(input, move |batch| {
            let _timer = baseline.elapsed_compute().timer();
            let rows = batch.num_rows();
            let mask = predicate.evaluate(&batch.batch)?.into_array(rows)?;
            if mask.data_type() != &DataType::Boolean {
                return internal_err!("filter predicate is {}, not boolean", mask.data_type());
            }
            let mut mask = mask.as_boolean().clone();
            if mask.null_count() > 0 {
                // NULL means "not true": drop the row.
                mask = datafusion::arrow::compute::prep_null_mask_filter(&mask);
            }
            let mut out = batch.filter(&mask)?;
            if let Some(p) = &projection {
                let columns = p.iter().map(|&i| Arc::clone(out.batch.column(i))).collect();
                // Keep the row count even when no column is kept (COUNT(*)).
                let options = RecordBatchOptions::new().with_row_count(Some(out.num_rows()));
                let batch =
                    RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &options)?;
                out = StreamBatch {
                    batch,
                    row_watermarks: out.row_watermarks,
                    kinds: out.kinds,
                };
            }
            baseline.record_output(out.num_rows());
            Ok(out)
        }))
    }
}
