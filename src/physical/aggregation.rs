//! Grouped aggregation state built from DataFusion's own pieces.
//!
//! Window operators do not implement any aggregate function. [`AggregateSet`] holds the
//! aggregate expressions exactly as DataFusion plans them (arguments, FILTER clauses, ORDER BY
//! inside the aggregate, DISTINCT), and [`GroupedAggregation`] is one group table: DataFusion's
//! `GroupValues` interning the keys plus one `GroupsAccumulator` per aggregate (or the
//! `GroupsAccumulatorAdapter` for functions that only have a row `Accumulator`). Such a table can
//! be *finished* (final values) or turned into partial *state* (`state()`), and tables can be
//! built from state with `merge_batch`, which is how HOP windows combine slices and how
//! checkpoints will store every aggregate function.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{prep_null_mask_filter, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

/// The aggregate functions of an operator and how to feed them.
#[derive(Debug, Clone)]
pub struct AggregateSet {
    /// The aggregates.
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// FILTER (WHERE ...) of each aggregate.
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Argument expressions of each aggregate (including ORDER BY keys of ordered aggregates).
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
}

/// Evaluated aggregate inputs of some rows.
#[derive(Debug, Clone)]
pub struct AggregateInputs {
    /// Per aggregate, its argument arrays.
    pub values: Vec<Vec<ArrayRef>>,
    /// Per aggregate, its FILTER mask (nulls already mean false).
    pub filters: Vec<Option<BooleanArray>>,
}

impl AggregateInputs {
    /// Memory of its arrays in bytes.
    pub fn memory_size(&self) -> usize {
        self.values
            .iter()
            .flatten()
            .map(|a| a.get_array_memory_size())
            .sum::<usize>()
            + self
                .filters
                .iter()
                .flatten()
                .map(|f| f.get_array_memory_size())
                .sum::<usize>()
    }

    /// The rows at `indices`.
    pub fn take(&self, indices: &UInt32Array) -> Result<Self> {
        let values = self
            .values
            .iter()
            .map(|arrays| {
                arrays
                    .iter()
                    .map(|a| Ok(take(a, indices, None)?))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let filters = self
            .filters
            .iter()
            .map(|f| match f {
                Some(f) => Ok(Some(take(f, indices, None)?.as_boolean().clone())),
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { values, filters })
    }
}

impl AggregateSet {
    /// Builds the set from planned aggregates and their filters.
    pub fn try_new(
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    ) -> Result<Self> {
        if aggregates.len() != filters.len() {
            return internal_err!("one filter slot per aggregate expected");
        }
        let arguments = aggregates
            .iter()
            .map(|agg| {
                let mut args = agg.expressions();
                args.extend(agg.order_bys().iter().map(|s| Arc::clone(&s.expr)));
                args
            })
            .collect();
        Ok(Self {
            aggregates,
            filters,
            arguments,
        })
    }

    /// Number of aggregates.
    pub fn len(&self) -> usize {
        self.aggregates.len()
    }

    /// True if there are no aggregates.
    pub fn is_empty(&self) -> bool {
        self.aggregates.is_empty()
    }

    /// Number of state columns of each aggregate (`GroupsAccumulator::state` arrays).
    pub fn state_widths(&self) -> Result<Vec<usize>> {
        self.aggregates
            .iter()
            .map(|a| Ok(a.state_fields()?.len()))
            .collect()
    }

    /// Types of each aggregate's arguments (as [`Self::evaluate`] returns them) over `schema`.
    pub fn argument_types(&self, schema: &Schema) -> Result<Vec<Vec<DataType>>> {
        self.arguments
            .iter()
            .map(|args| args.iter().map(|e| e.data_type(schema)).collect())
            .collect()
    }

    /// Output fields of the aggregates.
    pub fn output_fields(&self) -> Vec<Arc<Field>> {
        self.aggregates.iter().map(|a| a.field()).collect()
    }

    /// Evaluates arguments and filters over `batch`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<AggregateInputs> {
        let rows = batch.num_rows();
        let values = self
            .arguments
            .iter()
            .map(|args| {
                args.iter()
                    .map(|e| e.evaluate(batch).and_then(|v| v.into_array(rows)))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let filters = self
            .filters
            .iter()
            .map(|f| match f {
                Some(f) => {
                    let mask = f.evaluate(batch)?.into_array(rows)?;
                    let mask = mask.as_boolean();
                    Ok(Some(if mask.null_count() > 0 {
                        prep_null_mask_filter(mask)
                    } else {
                        mask.clone()
                    }))
                }
                None => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AggregateInputs { values, filters })
    }

    /// Fresh accumulators, one per aggregate.
    pub fn new_accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.aggregates
            .iter()
            .map(|agg| -> Result<Box<dyn GroupsAccumulator>> {
                if agg.groups_accumulator_supported() {
                    agg.create_groups_accumulator()
                } else {
                    let agg = Arc::clone(agg);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        agg.create_accumulator()
                    })))
                }
            })
            .collect()
    }
}

/// Keys and values of finished groups.
#[derive(Debug)]
pub struct Emitted {
    /// Key columns (empty without keys).
    pub keys: Vec<ArrayRef>,
    /// One array per aggregate (final values) ...
    pub values: Vec<ArrayRef>,
    /// ... or, for [`GroupedAggregation::take_state`], the state arrays per aggregate.
    pub states: Vec<Vec<ArrayRef>>,
    /// Number of groups.
    pub groups: usize,
}

impl Emitted {
    /// Memory of its arrays in bytes.
    pub fn memory_size(&self) -> usize {
        self.keys
            .iter()
            .chain(&self.values)
            .chain(self.states.iter().flatten())
            .map(|a| a.get_array_memory_size())
            .sum()
    }
}

/// One group table (see the module docs).
pub struct GroupedAggregation {
    set: Arc<AggregateSet>,
    group_values: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: usize,
    scratch: Vec<usize>,
}

impl std::fmt::Debug for GroupedAggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupedAggregation")
            .field("groups", &self.groups)
            .finish()
    }
}

impl GroupedAggregation {
    /// An empty table; `key_schema` is `None` when there are no group keys.
    pub fn try_new(set: Arc<AggregateSet>, key_schema: Option<&SchemaRef>) -> Result<Self> {
        let group_values = match key_schema {
            Some(schema) => Some(new_group_values(Arc::clone(schema), &GroupOrdering::None)?),
            None => None,
        };
        let accumulators = set.new_accumulators()?;
        Ok(Self {
            set,
            group_values,
            accumulators,
            groups: 0,
            scratch: Vec::new(),
        })
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Approximate memory in bytes.
    pub fn size(&self) -> usize {
        self.group_values.as_ref().map_or(0, |g| g.size())
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.scratch.capacity() * std::mem::size_of::<usize>()
    }

    fn assign_groups(&mut self, keys: &[ArrayRef], rows: usize) -> Result<()> {
        match self.group_values.as_mut() {
            Some(gv) => {
                gv.intern(keys, &mut self.scratch)?;
                self.groups = gv.len();
            }
            None => {
                self.scratch.clear();
                self.scratch.resize(rows, 0);
                if rows > 0 {
                    self.groups = 1;
                }
            }
        }
        Ok(())
    }

    /// Adds rows: their keys and evaluated aggregate inputs.
    pub fn update(
        &mut self,
        keys: &[ArrayRef],
        inputs: &AggregateInputs,
        rows: usize,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        self.assign_groups(keys, rows)?;
        for ((acc, values), filter) in self
            .accumulators
            .iter_mut()
            .zip(&inputs.values)
            .zip(&inputs.filters)
        {
            acc.update_batch(values, &self.scratch, filter.as_ref(), self.groups)?;
        }
        Ok(())
    }

    /// Merges partial state (as produced by [`take_state`](Self::take_state)).
    pub fn merge(
        &mut self,
        keys: &[ArrayRef],
        states: &[Vec<ArrayRef>],
        rows: usize,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        self.assign_groups(keys, rows)?;
        for (acc, state) in self.accumulators.iter_mut().zip(states) {
            acc.merge_batch(state, &self.scratch, self.groups)?;
        }
        Ok(())
    }

    fn take_keys(&mut self) -> Result<Vec<ArrayRef>> {
        match self.group_values.as_mut() {
            Some(gv) => gv.emit(EmitTo::All),
            None => Ok(vec![]),
        }
    }

    /// Final values of all groups; the table is empty afterwards.
    pub fn finish(&mut self) -> Result<Emitted> {
        let groups = self.groups;
        let keys = self.take_keys()?;
        let values = self
            .accumulators
            .iter_mut()
            .map(|a| a.evaluate(EmitTo::All))
            .collect::<Result<Vec<_>>>()?;
        self.groups = 0;
        Ok(Emitted {
            keys,
            values,
            states: vec![],
            groups,
        })
    }

    /// Partial state of all groups; the table is empty afterwards.
    pub fn take_state(&mut self) -> Result<Emitted> {
        let groups = self.groups;
        let keys = self.take_keys()?;
        let states = self
            .accumulators
            .iter_mut()
            .map(|a| a.state(EmitTo::All))
            .collect::<Result<Vec<_>>>()?;
        self.groups = 0;
        Ok(Emitted {
            keys,
            values: vec![],
            states,
            groups,
        })
    }

    /// The aggregate set.
    pub fn set(&self) -> &Arc<AggregateSet> {
        &self.set
    }
}

/// Schema of the key columns, or `None` without keys.
pub fn key_schema(fields: Vec<Field>) -> Option<SchemaRef> {
    if fields.is_empty() {
        None
    } else {
        Some(Arc::new(Schema::new(fields)))
    }
}
