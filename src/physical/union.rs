//! `StreamUnionExec`: `UNION ALL` of streams.
//!
//! Stateless. Output partition `p` is partition `p` of the inputs laid end to end (as
//! DataFusion's `UnionExec` numbers them): its messages, watermarks, idleness and barriers
//! pass through unchanged, rows retyped to the union's schema (the first input's names). A
//! node that reads several partitions (an exchange, a keyed or global window) combines their
//! watermarks by taking the smallest, so the union's watermark is the smallest of its inputs',
//! as in Flink. Changelog rows keep their kinds. The event-time columns of the output are those
//! that carry event time in every input.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};

use super::message::MessageStream;
use super::streaming::{
    StreamingExec, data_only, execute_input, fmt_changelog, map_data, time_attributes,
    window_columns,
};
use crate::physical::window_spec::WindowField;

/// See the module docs.
#[derive(Debug)]
pub struct StreamUnionExec {
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl StreamUnionExec {
    /// The union of `inputs`, with the output schema `schema` (DataFusion's union's).
    pub fn try_new(
        inputs: Vec<Arc<dyn ExecutionPlan>>,
        schema: datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<Self> {
        if inputs.is_empty() {
            return internal_err!("UNION ALL without inputs");
        }
        let partitions = inputs
            .iter()
            .map(|i| i.output_partitioning().partition_count())
            .sum();
        let unbounded = inputs.iter().any(|i| i.boundedness().is_unbounded());
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            if unbounded {
                Boundedness::Unbounded {
                    requires_infinite_memory: false,
                }
            } else {
                Boundedness::Bounded
            },
        );
        Ok(Self {
            inputs,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The input and its partition behind output partition `partition`.
    fn locate(&self, mut partition: usize) -> Result<(&Arc<dyn ExecutionPlan>, usize)> {
        for input in &self.inputs {
            let count = input.output_partitioning().partition_count();
            if partition < count {
                return Ok((input, partition));
            }
            partition -= count;
        }
        internal_err!("StreamUnionExec has no partition {partition}")
    }
}

impl DisplayAs for StreamUnionExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamUnionExec: inputs={}, partitions={}, watermark=min over inputs",
            self.inputs.len(),
            self.properties.partitioning.partition_count()
        )?;
        match self
            .inputs
            .iter()
            .find(|i| super::streaming::changelog_mode(i).is_updating())
        {
            Some(input) => fmt_changelog(f, input),
            None => Ok(()),
        }
    }
}

impl ExecutionPlan for StreamUnionExec {
    fn name(&self) -> &str {
        "StreamUnionExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::try_new(children, self.schema())?))
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

impl StreamingExec for StreamUnionExec {
    /// Rows pass through with their kinds.
    fn accepts_changes(&self) -> bool {
        true
    }

    /// The window columns every input has at the same place.
    fn window_columns(&self) -> HashMap<usize, WindowField> {
        let mut columns = window_columns(&self.inputs[0]);
        for input in &self.inputs[1..] {
            let other = window_columns(input);
            columns.retain(|i, f| other.get(i) == Some(f));
        }
        columns
    }

    /// The columns that carry event time in every input.
    fn time_attributes(&self) -> HashSet<usize> {
        let mut columns = time_attributes(&self.inputs[0]);
        for input in &self.inputs[1..] {
            let other = time_attributes(input);
            columns.retain(|i| other.contains(i));
        }
        columns
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let (input, at) = self.locate(partition)?;
        let messages = execute_input(input, at, context)?;
        if input.schema() == self.schema() {
            return Ok(messages);
        }
        let schema = self.schema();
        Ok(map_data(messages, move |mut batch| {
            batch.batch = RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                batch.batch.columns().to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(batch.batch.num_rows())),
            )?;
            Ok(batch)
        }))
    }
}
