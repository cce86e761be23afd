//! `WindowAssignExec`: a window TVF whose rows are not aggregated.
//!
//! `SELECT * FROM TABLE(TUMBLE(...))` (and HOP) without a window GROUP BY: every row is
//! emitted once per window containing it, with `window_start`, `window_end` and `window_time`
//! appended. Stateless; no row is late (nothing has fired), so nothing is dropped. Rows with a
//! NULL time belong to no window and are dropped. Watermarks, idleness and barriers pass through.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};

use super::event_time::to_millis;
use super::message::{MessageStream, StreamBatch};
use super::streaming::{
    StreamingExec, data_only, execute_input, map_data, time_attributes, window_time_columns,
};
use super::window_spec::{WindowKind, WindowSpec};
use crate::physical::window_spec::WindowField;

/// Stateless window assignment (see the module docs).
#[derive(Debug)]
pub struct WindowAssignExec {
    input: Arc<dyn ExecutionPlan>,
    spec: WindowSpec,
    time_expr: Arc<dyn PhysicalExpr>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl WindowAssignExec {
    /// Builds the node; `schema` is the input's columns plus the three window columns.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        spec: WindowSpec,
        time_expr: Arc<dyn PhysicalExpr>,
        schema: SchemaRef,
    ) -> Result<Self> {
        if matches!(spec.kind, WindowKind::Session { .. }) {
            return plan_err!(
                "a SESSION window must be aggregated: add GROUP BY window_start, window_end \
                 (sessions are only known once they close)"
            );
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            input.boundedness(),
        );
        Ok(Self {
            input,
            spec,
            time_expr,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl WindowAssignExec {}

impl DisplayAs for WindowAssignExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowAssignExec: {} on {}", self.spec, self.time_expr)
    }
}

impl ExecutionPlan for WindowAssignExec {
    fn name(&self) -> &str {
        "WindowAssignExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.time_expr)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("WindowAssignExec needs exactly one child");
        };
        Ok(Arc::new(Self::try_new(
            input,
            self.spec,
            Arc::clone(&self.time_expr),
            self.schema(),
        )?))
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

impl StreamingExec for WindowAssignExec {
    /// Output column index -> window column (the three come after the input's columns).
    fn window_columns(&self) -> std::collections::HashMap<usize, WindowField> {
        let first = self.input.schema().fields().len();
        WindowField::ALL
            .iter()
            .enumerate()
            .map(|(i, f)| (first + i, *f))
            .collect()
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        let mut attrs = time_attributes(&self.input);
        attrs.extend(window_time_columns(&self.window_columns()));
        attrs
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.input, partition, context)?;
        let spec = self.spec;
        let time_expr = Arc::clone(&self.time_expr);
        let schema = self.schema();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        Ok(map_data(input, move |batch| {
            let _timer = baseline.elapsed_compute().timer();
            let out = assign(&spec, &time_expr, &schema, batch)?;
            baseline.record_output(out.num_rows());
            Ok(out)
        }))
    }
}

fn assign(
    spec: &WindowSpec,
    time_expr: &Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
    batch: StreamBatch,
) -> Result<StreamBatch> {
    let rows = batch.num_rows();
    let times = to_millis(&time_expr.evaluate(&batch.batch)?.into_array(rows)?)?;
    let size = spec.size();
    let mut indices = Vec::with_capacity(rows);
    let mut starts = Vec::with_capacity(rows);
    for i in 0..rows {
        if times.is_null(i) {
            continue;
        }
        for start in spec.window_starts(times.value(i)) {
            indices.push(i as u32);
            starts.push(start);
        }
    }
    let indices = UInt32Array::from(indices);
    let taken = take_record_batch(&batch.batch, &indices)?;
    let tz = match schema.fields().last().map(|f| f.data_type()) {
        Some(DataType::Timestamp(_, tz)) => tz.clone(),
        _ => None,
    };
    let mut columns: Vec<ArrayRef> = taken.columns().to_vec();
    for field in WindowField::ALL {
        let values: Vec<i64> = starts
            .iter()
            .map(|s| field.value(*s, s.saturating_add(size)))
            .collect();
        columns.push(Arc::new(
            TimestampMillisecondArray::from(values).with_timezone_opt(tz.clone()),
        ));
    }
    let out = RecordBatch::try_new(Arc::clone(schema), columns)?;
    let row_watermarks = match &batch.row_watermarks {
        Some(w) => Some(
            take(w, &indices, None)?
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("row watermarks not Int64".into())
                })?,
        ),
        None => None,
    };
    Ok(StreamBatch::with_row_watermarks(out, row_watermarks))
}
