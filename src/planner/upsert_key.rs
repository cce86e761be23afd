//! The upsert key of a query's result: columns whose values tell its rows apart, so that a
//! changelog of the result can be applied by key (a materialized view keeps one row per key).
//!
//! Derived from the logical plan top-down, as Flink's `FlinkRelMdUpsertKeys` does for the
//! common shapes: a GROUP BY is unique on its keys, a DISTINCT on all its columns; projections
//! keep a key whose columns they pass on unchanged (renamed or reordered); filters, sorts and
//! aliases keep it. Anything else (a join, a window, UNION, grouping sets) gives no key, and
//! the result is matched by whole rows.

use datafusion::logical_expr::{Distinct, Expr, LogicalPlan};

/// The upsert key of `plan`'s result (column indices), if it has one.
pub fn upsert_key(plan: &LogicalPlan) -> Option<Vec<usize>> {
    match plan {
        LogicalPlan::Aggregate(aggregate) => {
            if aggregate
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)))
            {
                return None;
            }
            Some((0..aggregate.group_expr.len()).collect())
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            Some((0..input.schema().fields().len()).collect())
        }
        LogicalPlan::Projection(projection) => {
            let input_key = upsert_key(&projection.input)?;
            let input_schema = projection.input.schema();
            let mut key = Vec::with_capacity(input_key.len());
            for k in input_key {
                let (qualifier, field) = input_schema.qualified_field(k);
                let passed = projection.expr.iter().position(|e| {
                    matches!(e.clone().unalias(), Expr::Column(c)
                        if c.name == *field.name() && c.relation.as_ref() == qualifier)
                })?;
                key.push(passed);
            }
            Some(key)
        }
        LogicalPlan::Filter(filter) => upsert_key(&filter.input),
        LogicalPlan::Sort(sort) => upsert_key(&sort.input),
        LogicalPlan::SubqueryAlias(alias) => upsert_key(&alias.input),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn key_of(sql: &str) -> Option<Vec<usize>> {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT, b INT, c INT) AS VALUES (1, 2, 3)")
            .await
            .unwrap();
        let df = ctx.sql(sql).await.unwrap();
        upsert_key(df.logical_plan())
    }

    #[tokio::test]
    async fn keys_of_common_shapes() {
        assert_eq!(
            key_of("SELECT a, b, COUNT(*) FROM t GROUP BY a, b").await,
            Some(vec![0, 1])
        );
        // Reordered and renamed keys, a HAVING, an alias around the query.
        assert_eq!(
            key_of("SELECT COUNT(*) AS n, b AS bee, a FROM t GROUP BY a, b HAVING COUNT(*) > 1")
                .await,
            Some(vec![2, 1])
        );
        assert_eq!(
            key_of("SELECT * FROM (SELECT a, SUM(c) FROM t GROUP BY a) AS s").await,
            Some(vec![0])
        );
        assert_eq!(
            key_of("SELECT DISTINCT b, a FROM t").await,
            Some(vec![0, 1])
        );
        assert_eq!(key_of("SELECT COUNT(*) FROM t").await, Some(vec![]));
        // A key not passed on, or computed from: no key.
        assert_eq!(key_of("SELECT COUNT(*) FROM t GROUP BY a").await, None);
        assert_eq!(
            key_of("SELECT a + 1, COUNT(*) FROM t GROUP BY a").await,
            None
        );
        assert_eq!(key_of("SELECT a, b FROM t").await, None);
        assert_eq!(
            key_of("SELECT a, b, COUNT(*) FROM t GROUP BY ROLLUP (a, b)").await,
            None
        );
    }
}
