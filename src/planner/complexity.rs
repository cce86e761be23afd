//! `check_statement`: statements too deep to plan get an error, not a stack overflow.
//!
//! The SQL parser limits how deeply parentheses, subqueries and function calls nest, but it
//! builds chains of infix and postfix operators (`1 + 1 + ...`, `a OR b OR ...`, `x::t::t`)
//! and of set operations (`SELECT 1 UNION SELECT 2 UNION ...`) in a loop, as trees as deep as
//! the chain is long. Everything after the parser (visitors, planning, optimizing, evaluating,
//! even dropping the tree) recurses over that depth, on whatever stack the caller runs: a
//! Tokio worker has 2 MiB. A long enough chain overflowed it and aborted the whole process.
//!
//! Right after parsing, every statement goes through this guard:
//!
//! - Chains of `AND` and of `OR` become balanced trees (both are associative, also with NULLs),
//!   so a `WHERE` with 10,000 `OR`ed comparisons is 14 levels deep and plans normally.
//! - Expressions nested deeper than [`MAX_EXPRESSION_DEPTH`], set operations chained more than
//!   [`MAX_SET_OPERATIONS`] times and more than [`MAX_RELATIONS`] tables in one statement are
//!   refused with SQLSTATE 54001 ("statement too complex", PostgreSQL's code for exceeding its
//!   stack depth), naming the limit and how to stay under it.
//!
//! The guard itself never recurses deeper than the limits: it walks with sqlparser's visitor,
//! and cuts any subtree below the limit out of the tree into a work list (set-operation chains
//! are unrolled in a loop), so that a refused statement is also taken apart and dropped
//! without deep recursion.

use std::ops::ControlFlow;

use datafusion::error::Result;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Query, SetExpr, Statement, TableFactor, Value, Values, VisitMut,
    VisitorMut,
};

use crate::error::{STATEMENT_TOO_COMPLEX, with_sqlstate};

/// Deepest expression nesting accepted (PostgreSQL refuses at about this depth with its
/// default 2 MB stack).
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// Most set operations (`UNION`, `INTERSECT`, `EXCEPT`) chained in one query.
pub const MAX_SET_OPERATIONS: usize = 500;

/// Most tables (and subqueries in FROM) in one statement: each join is a plan level.
pub const MAX_RELATIONS: usize = 500;

/// `AND` / `OR` chains at least this long are rebalanced.
const REBALANCE_FROM: usize = 16;

/// Rebalances `AND`/`OR` chains and refuses statements beyond the limits (see the module
/// docs). A refused statement is consumed and dropped here, safely.
pub fn check_statement(mut statement: Statement) -> Result<Statement> {
    let mut guard = Guard::default();
    let _ = statement.visit(&mut guard);
    guard.finish(statement)
}

/// [`check_statement`] for a lone expression (a computed column, a watermark).
pub fn check_expr(mut expr: Expr) -> Result<Expr> {
    let mut guard = Guard::default();
    let _ = expr.visit(&mut guard);
    guard.finish(expr)
}

/// A subtree cut out of the statement, to be checked and dropped on its own.
enum Piece {
    Expr(Box<Expr>),
    SetExpr(Box<SetExpr>),
}

#[derive(Default)]
struct Guard {
    /// Expression nesting at the current point of the walk.
    depth: usize,
    relations: usize,
    /// Why the statement is refused (the first limit hit).
    refused: Option<String>,
    /// Subtrees cut out past a limit, not yet taken apart.
    cut: Vec<Piece>,
}

impl Guard {
    fn refuse(&mut self, why: String) {
        self.refused.get_or_insert(why);
    }

    /// The statement, or the error once every cut piece has been taken apart: each is walked
    /// with a fresh depth (cutting again below the limit), then dropped shallow.
    fn finish<T>(mut self, checked: T) -> Result<T> {
        if self.refused.is_none() {
            return Ok(checked);
        }
        drop(checked);
        while let Some(piece) = self.cut.pop() {
            self.depth = 0;
            match piece {
                Piece::Expr(mut e) => {
                    let _ = e.as_mut().visit(&mut self);
                }
                Piece::SetExpr(mut s) => {
                    let _ = s.as_mut().visit(&mut self);
                }
            }
        }
        let why = self.refused.unwrap_or_default();
        Err(with_sqlstate(
            STATEMENT_TOO_COMPLEX,
            format!("statement too complex: {why}"),
        ))
    }
}

fn placeholder() -> Expr {
    Expr::Value(Value::Null.into())
}

fn empty_body() -> SetExpr {
    SetExpr::Values(Values {
        explicit_row: false,
        value_keyword: false,
        rows: Vec::new(),
    })
}

/// The operands of a chain of `op` (left-deep as parsed, or any shape), in order, taken out of
/// `expr` in a loop.
fn chain_operands(expr: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut operands = Vec::new();
    let mut pending = vec![expr];
    while let Some(e) = pending.pop() {
        match e {
            Expr::BinaryOp { left, op: o, right } if o == *op => {
                // Right first onto the stack, so the left is taken apart first.
                pending.push(*right);
                pending.push(*left);
            }
            other => operands.push(other),
        }
    }
    operands
}

/// A balanced tree of `op` over `operands` (at least one), keeping their order.
fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() == 1 {
        return operands.pop().unwrap_or_else(placeholder);
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp {
        left: Box::new(balanced(operands, op)),
        op: op.clone(),
        right: Box::new(balanced(right, op)),
    }
}

/// Length of the left spine of `op` under `expr`, counted in a loop.
fn spine(expr: &Expr, op: &BinaryOperator) -> usize {
    let mut n = 0;
    let mut e = expr;
    while let Expr::BinaryOp { left, op: o, .. } = e {
        if o != op {
            break;
        }
        n += 1;
        e = left;
    }
    n
}

impl VisitorMut for Guard {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            self.refuse(format!(
                "expressions are nested more than {MAX_EXPRESSION_DEPTH} levels deep; split \
                 long chains of operators (use IN (...) for many comparisons, or compute parts \
                 in a subquery)"
            ));
            self.cut.push(Piece::Expr(Box::new(std::mem::replace(
                expr,
                placeholder(),
            ))));
            return ControlFlow::Continue(());
        }
        if let Expr::BinaryOp { op, .. } = expr
            && matches!(op, BinaryOperator::And | BinaryOperator::Or)
        {
            let op = op.clone();
            if spine(expr, &op) >= REBALANCE_FROM {
                let chain = std::mem::replace(expr, placeholder());
                *expr = balanced(chain_operands(chain, &op), &op);
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        // Set operations chain in a loop (left-deep); measure the chain the same way, before
        // the visitor recurses into it.
        let mut chained = 0;
        let mut body = query.body.as_ref();
        while let SetExpr::SetOperation { left, .. } = body {
            chained += 1;
            body = left;
        }
        if chained > MAX_SET_OPERATIONS {
            self.refuse(format!(
                "{chained} set operations (UNION, INTERSECT, EXCEPT) in one query, more than \
                 {MAX_SET_OPERATIONS}; load the rows into a table, or use VALUES"
            ));
            let mut rest = std::mem::replace(query.body.as_mut(), empty_body());
            loop {
                match rest {
                    SetExpr::SetOperation { left, right, .. } => {
                        self.cut.push(Piece::SetExpr(right));
                        rest = *left;
                    }
                    other => {
                        self.cut.push(Piece::SetExpr(Box::new(other)));
                        break;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _table: &mut TableFactor) -> ControlFlow<()> {
        self.relations += 1;
        if self.relations == MAX_RELATIONS + 1 {
            self.refuse(format!(
                "more than {MAX_RELATIONS} tables and subqueries in one statement; split it \
                 into views"
            ));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::new(&GenericDialect {})
            .try_with_sql(sql)
            .unwrap()
            .parse_statement()
            .unwrap()
    }

    fn code(e: &datafusion::error::DataFusionError) -> &'static str {
        crate::error::sqlstate_error(e)
            .map(|c| c.code)
            .unwrap_or("")
    }

    #[test]
    fn long_or_chains_become_balanced() {
        let terms: Vec<String> = (0..10_000).map(|i| format!("a = {i}")).collect();
        let sql = format!("SELECT * FROM t WHERE {}", terms.join(" OR "));
        let checked = check_statement(parse(&sql)).unwrap();
        let Statement::Query(q) = &checked else {
            panic!("not a query")
        };
        let SetExpr::Select(select) = q.body.as_ref() else {
            panic!("not a select")
        };
        let mut depth = 0;
        let mut e = select.selection.as_ref().unwrap();
        while let Expr::BinaryOp { left, op, .. } = e {
            if *op != BinaryOperator::Or {
                break;
            }
            depth += 1;
            e = left;
        }
        // Halving 10,000 operands down the left side takes 13 levels (14 on the right).
        assert_eq!(depth, 13);
        // Order is kept: the leftmost operand is still the first comparison.
        assert_eq!(e.to_string(), "a = 0");
    }

    #[test]
    fn short_chains_are_left_as_written() {
        let sql = "SELECT * FROM t WHERE a = 1 OR b = 2 AND c = 3";
        assert_eq!(
            check_statement(parse(sql)).unwrap().to_string(),
            parse(sql).to_string()
        );
    }

    /// `SELECT 1+1+...` with 20,000 terms aborted `sabot serve` with a stack overflow.
    #[test]
    fn deep_arithmetic_is_refused_with_54001() {
        let sql = format!("SELECT {}", vec!["1"; 20_000].join("+"));
        let e = check_statement(parse(&sql)).unwrap_err();
        assert_eq!(code(&e), STATEMENT_TOO_COMPLEX);
        assert!(e.to_string().contains("nested more than 1000"), "{e}");
        // Just under the limit is fine.
        let sql = format!("SELECT {}", vec!["1"; MAX_EXPRESSION_DEPTH - 2].join("+"));
        assert!(check_statement(parse(&sql)).is_ok());
    }

    #[test]
    fn deep_casts_and_unions_are_refused() {
        let sql = format!("SELECT 1{}", "::BIGINT".repeat(5_000));
        assert_eq!(
            code(&check_statement(parse(&sql)).unwrap_err()),
            STATEMENT_TOO_COMPLEX
        );
        let sql = vec!["SELECT 1"; 20_000].join(" UNION ALL ");
        let e = check_statement(parse(&sql)).unwrap_err();
        assert_eq!(code(&e), STATEMENT_TOO_COMPLEX);
        assert!(e.to_string().contains("set operations"), "{e}");
        let tables: Vec<String> = (0..600).map(|i| format!("t{i}")).collect();
        let sql = format!("SELECT 1 FROM {}", tables.join(", "));
        assert!(
            check_statement(parse(&sql))
                .unwrap_err()
                .to_string()
                .contains("tables")
        );
    }
}
