//! `rewrite_flink_functions`: Flink SQL functions DataFusion spells differently.
//!
//! `MOD(a, b)` becomes `a % b` (Nexmark's q2 uses it) and `GROUPING_ID(a, b)` becomes
//! `GROUPING(a, b)` (the same bit vector). The rewrite is on the parsed statement,
//! before DataFusion plans it, so types and errors are DataFusion's own.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    Statement, visit_expressions_mut,
};

/// Rewrites Flink function spellings in `statement` (see the module docs).
pub fn rewrite_flink_functions(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        // GROUPING_ID(a, b) is DataFusion's GROUPING(a, b): the bits of the left-out keys.
        if let Expr::Function(f) = expr
            && f.name.to_string().eq_ignore_ascii_case("GROUPING_ID")
        {
            f.name = ObjectName::from(vec![Ident::new("grouping")]);
        }
        if let Expr::Function(f) = expr
            && f.name.to_string().eq_ignore_ascii_case("MOD")
            && let FunctionArguments::List(list) = &f.args
            && list.args.len() == 2
            && let (
                FunctionArg::Unnamed(FunctionArgExpr::Expr(a)),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(b)),
            ) = (&list.args[0], &list.args[1])
        {
            *expr = Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(a.clone()))),
                op: BinaryOperator::Modulo,
                right: Box::new(Expr::Nested(Box::new(b.clone()))),
            };
        }
        ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn mod_becomes_modulo() {
        let mut s = Parser::new(&GenericDialect {})
            .try_with_sql("SELECT MOD(a + 1, 123) FROM t WHERE mod(b, 2) = 0")
            .unwrap()
            .parse_statement()
            .unwrap();
        rewrite_flink_functions(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT (a + 1) % (123) FROM t WHERE (b) % (2) = 0"
        );
    }
}
