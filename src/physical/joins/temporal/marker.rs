//! Reading the `FOR SYSTEM_TIME AS OF` marker (see [`crate::functions::system_time`]) off a
//! join's filter: the one place the planner's rules find it, read its arguments and take it
//! out.

use std::sync::Arc;

use datafusion::common::{Result, plan_err};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{ScalarFunctionExpr, conjunction_opt, split_conjunction};
use datafusion::physical_plan::joins::utils::{ColumnIndex, JoinFilter};

use crate::functions::system_time::is_marker;

/// The marker of a join filter.
pub struct SystemTimeMarker {
    /// The input column each argument reads (`None`: not a plain column): the probe side's
    /// time first, then columns of the versioned table.
    pub args: Vec<Option<ColumnIndex>>,
    /// The filter without the marker (`None` if nothing else is left).
    pub rest: Option<JoinFilter>,
}

/// The marker of `filter`, if it carries one; more than one is refused.
pub fn system_time_marker(filter: &JoinFilter) -> Result<Option<SystemTimeMarker>> {
    let (markers, rest): (Vec<_>, Vec<_>) = split_conjunction(filter.expression())
        .into_iter()
        .cloned()
        .partition(is_marker);
    let call = match markers.as_slice() {
        [] => return Ok(None),
        [marker] => marker.downcast_ref::<ScalarFunctionExpr>(),
        _ => return plan_err!("a join can carry one FOR SYSTEM_TIME AS OF, not several"),
    };
    let args = call
        .map(|call| {
            call.args()
                .iter()
                .map(|a| {
                    let column = a.downcast_ref::<Column>()?;
                    filter.column_indices().get(column.index()).cloned()
                })
                .collect()
        })
        .unwrap_or_default();
    let rest = conjunction_opt(rest).map(|expression| {
        JoinFilter::new(
            expression,
            filter.column_indices().to_vec(),
            Arc::clone(filter.schema()),
        )
    });
    Ok(Some(SystemTimeMarker { args, rest }))
}
