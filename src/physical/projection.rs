//! `StreamProjectionExec`: SELECT expressions inside a streaming pipeline.
//!
//! Stateless. Evaluates DataFusion's physical expressions on every batch; row count and per-row
//! watermarks are unchanged. Watermarks, idleness and barriers pass through in order.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::message::{MessageStream, StreamBatch};
use super::streaming::{StreamingExec, data_only, execute_input, fmt_changelog, map_data};
use crate::physical::window_spec::WindowField;

/// Streaming projection (see the module docs).
#[derive(Debug)]
pub struct StreamProjectionExec {
    input: Arc<dyn ExecutionPlan>,
    exprs: Vec<ProjectionExpr>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl StreamProjectionExec {
    /// The streaming equivalent of a stock `ProjectionExec`.
    pub fn from_projection(projection: &ProjectionExec) -> Self {
        Self {
            input: Arc::clone(projection.input()),
            exprs: projection.expr().to_vec(),
            properties: Arc::clone(projection.properties()),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl StreamProjectionExec {
    /// The input.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// For each output column, the input column it copies, if it is a plain column reference.
    pub fn column_sources(&self) -> Vec<Option<usize>> {
        self.exprs
            .iter()
            .map(|e| {
                e.expr
                    .downcast_ref::<datafusion::physical_expr::expressions::Column>()
                    .map(|c| c.index())
            })
            .collect()
    }
}

impl DisplayAs for StreamProjectionExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let exprs: Vec<String> = self
            .exprs
            .iter()
            .map(|e| {
                let text = e.expr.to_string();
                if text == e.alias {
                    text
                } else {
                    format!("{text} as {}", e.alias)
                }
            })
            .collect();
        write!(f, "StreamProjectionExec: expr=[{}]", exprs.join(", "))?;
        fmt_changelog(f, &self.input)
    }
}

impl ExecutionPlan for StreamProjectionExec {
    fn name(&self) -> &str {
        "StreamProjectionExec"
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
        for e in &self.exprs {
            if f(&e.expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("StreamProjectionExec needs exactly one child");
        };
        Ok(Arc::new(Self {
            properties: super::streaming::follow_partitions(&self.properties, &input),
            input,
            exprs: self.exprs.clone(),

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

impl StreamingExec for StreamProjectionExec {
    /// Row by row: each row keeps its kind.
    fn accepts_changes(&self) -> bool {
        true
    }

    fn window_columns(&self) -> std::collections::HashMap<usize, WindowField> {
        let input = super::streaming::window_columns(&self.input);
        self.column_sources()
            .into_iter()
            .enumerate()
            .filter_map(|(i, source)| Some((i, *input.get(&source?)?)))
            .collect()
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        let input = super::streaming::time_attributes(&self.input);
        self.column_sources()
            .into_iter()
            .enumerate()
            .filter_map(|(i, source)| source.filter(|s| input.contains(s)).map(|_| i))
            .collect()
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.input, partition, context)?;
        let exprs: Vec<Arc<dyn PhysicalExpr>> =
            self.exprs.iter().map(|e| Arc::clone(&e.expr)).collect();
        let schema = self.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        Ok(map_data(input, move |batch| {
            let _timer = baseline.elapsed_compute().timer();
            let rows = batch.num_rows();
            let columns = exprs
                .iter()
                .map(|e| e.evaluate(&batch.batch).and_then(|v| v.into_array(rows)))
                .collect::<Result<Vec<_>>>()?;
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            let out = RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &options)?;
            baseline.record_output(rows);
            Ok(StreamBatch {
                batch: out,
                row_watermarks: batch.row_watermarks,
                kinds: batch.kinds,
            })
        }))
    }
}
