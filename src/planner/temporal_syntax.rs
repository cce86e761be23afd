//! `FOR SYSTEM_TIME AS OF`: Flink's temporal join syntax, turned into a join condition that
//! DataFusion plans and the streaming planner recognizes.
//!
//! `... JOIN versioned FOR SYSTEM_TIME AS OF o.ts [AS r] ON o.k = r.k` becomes
//! `... JOIN versioned [AS r] ON (o.k = r.k) AND __sabot_system_time_as_of(o.ts, r.c, ...)`,
//! where `r.c, ...` are the timestamp columns of `versioned` (see
//! [`crate::functions::system_time`]). Two rewriters:
//!
//! 1. [`prepare_temporal_syntax`] works on tokens, because the generic SQL dialect does not
//!    parse the clause: `FOR SYSTEM_TIME AS OF o.ts` becomes the table arguments
//!    `(__sabot_system_time_as_of(o.ts))`, which it does parse.
//! 2. [`rewrite_temporal_joins`] works on the parsed statement: it takes those arguments off
//!    the table again and adds the marker to the ON condition of the join, naming a column of
//!    the versioned table read from the catalog.
//!
//! As in Flink, the clause takes a column of the probe side (its time attribute), not an
//! expression, and only an INNER or LEFT join with an ON condition can carry it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, TableReference, plan_err};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    JoinConstraint, JoinOperator, ObjectName, Query, SetExpr, TableFactor, TableWithJoins,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::functions::system_time::SYSTEM_TIME_AS_OF;

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Index of the next token at or after `i` that is not whitespace (comments included).
fn skip_space(tokens: &[Token], mut i: usize) -> usize {
    while i < tokens.len() && matches!(tokens[i], Token::Whitespace(_)) {
        i += 1;
    }
    i
}

/// Rewrites `FOR SYSTEM_TIME AS OF column` into table arguments (step 1 of the module docs).
/// Returns the text unchanged when there is nothing to rewrite.
pub fn prepare_temporal_syntax(sql: &str) -> Result<Cow<'_, str>> {
    if !sql.to_ascii_uppercase().contains("SYSTEM_TIME") {
        return Ok(Cow::Borrowed(sql));
    }
    let dialect = GenericDialect {};
    // Literals keep their escapes (`'O''Brien'`): the text is rebuilt from these tokens.
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| DataFusionError::SQL(Box::new(e.into()), None))?;
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len() + 4);
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        if is_word(&tokens[i], "FOR") {
            // FOR SYSTEM_TIME AS OF
            let mut j = i;
            let mut clause = true;
            for word in ["SYSTEM_TIME", "AS", "OF"] {
                j = skip_space(&tokens, j + 1);
                if j >= tokens.len() || !is_word(&tokens[j], word) {
                    clause = false;
                    break;
                }
            }
            if clause {
                // The column: word (. word)*
                let mut k = skip_space(&tokens, j + 1);
                let mut column: Vec<Token> = Vec::new();
                while k < tokens.len() {
                    match (&tokens[k], column.last()) {
                        (Token::Word(_), None | Some(Token::Period))
                        | (Token::Period, Some(Token::Word(_))) => {
                            column.push(tokens[k].clone());
                            k += 1;
                        }
                        _ => break,
                    }
                }
                let next = skip_space(&tokens, k);
                let ends_column = next >= tokens.len()
                    || matches!(
                        &tokens[next],
                        Token::Word(_) | Token::RParen | Token::Comma | Token::SemiColon
                    );
                if !matches!(column.last(), Some(Token::Word(_))) || !ends_column {
                    return plan_err!(
                        "FOR SYSTEM_TIME AS OF takes a time attribute column of the probe side \
                         (as in Flink), e.g. JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r \
                         ON ...; an expression is not supported"
                    );
                }
                out.push(Token::LParen);
                out.push(Token::make_word(SYSTEM_TIME_AS_OF, None));
                out.push(Token::LParen);
                out.extend(column);
                out.push(Token::RParen);
                out.push(Token::RParen);
                changed = true;
                i = k;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    if !changed {
        return Ok(Cow::Borrowed(sql));
    }
    Ok(Cow::Owned(out.iter().map(|t| t.to_string()).collect()))
}

/// The probe-side column of a table factor carrying the marker arguments of step 1, if it does.
fn marked_time(factor: &TableFactor) -> Option<&SqlExpr> {
    let TableFactor::Table {
        args: Some(args), ..
    } = factor
    else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Function(f)))] = args.args.as_slice()
    else {
        return None;
    };
    if !f.name.to_string().eq_ignore_ascii_case(SYSTEM_TIME_AS_OF) {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] => Some(e),
        _ => None,
    }
}

/// Visits every query's FROM clauses (nested queries too).
struct FromClauses<F: FnMut(&mut TableWithJoins) -> Result<()>>(F);

impl<F: FnMut(&mut TableWithJoins) -> Result<()>> VisitorMut for FromClauses<F> {
    type Break = DataFusionError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        match from_clauses(&mut query.body, &mut self.0) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

fn from_clauses(
    body: &mut SetExpr,
    f: &mut impl FnMut(&mut TableWithJoins) -> Result<()>,
) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            for from in &mut select.from {
                with_nested(from, f)?;
            }
            Ok(())
        }
        SetExpr::SetOperation { left, right, .. } => {
            from_clauses(left, f)?;
            from_clauses(right, f)
        }
        _ => Ok(()),
    }
}

/// `f` over `from` and the parenthesized joins inside it.
fn with_nested(
    from: &mut TableWithJoins,
    f: &mut impl FnMut(&mut TableWithJoins) -> Result<()>,
) -> Result<()> {
    let factors =
        std::iter::once(&mut from.relation).chain(from.joins.iter_mut().map(|j| &mut j.relation));
    for factor in factors {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = factor
        {
            with_nested(table_with_joins, f)?;
        }
    }
    f(from)
}

fn visit(
    statement: &mut DFStatement,
    f: impl FnMut(&mut TableWithJoins) -> Result<()>,
) -> Result<()> {
    match visit_with(statement, &mut FromClauses(f)) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The queries of `statement` (inside EXPLAIN and `COPY (...) TO` too) through `visitor`.
fn visit_with<V: VisitorMut<Break = DataFusionError>>(
    statement: &mut DFStatement,
    visitor: &mut V,
) -> ControlFlow<DataFusionError> {
    match statement {
        DFStatement::Statement(s) => s.visit(visitor),
        DFStatement::Explain(explain) => visit_with(&mut explain.statement, visitor),
        DFStatement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(query) => query.visit(visitor),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    }
}

/// Step 2 of the module docs: every `FOR SYSTEM_TIME AS OF` as a marker in its join's ON
/// condition. The versioned tables are looked up in `ctx`'s catalog for a column to name.
pub async fn rewrite_temporal_joins(
    ctx: &SessionContext,
    statement: &mut DFStatement,
) -> Result<()> {
    let mut versioned: Vec<ObjectName> = Vec::new();
    visit(statement, |from| {
        if marked_time(&from.relation).is_some() {
            return plan_err!(
                "FOR SYSTEM_TIME AS OF belongs to the versioned table on the right of a JOIN: \
                 FROM orders AS o JOIN rates FOR SYSTEM_TIME AS OF o.order_time AS r ON ..."
            );
        }
        for join in &from.joins {
            if marked_time(&join.relation).is_some()
                && let TableFactor::Table { name, .. } = &join.relation
            {
                versioned.push(name.clone());
            }
        }
        Ok(())
    })?;
    if versioned.is_empty() {
        return Ok(());
    }
    // Columns of each versioned table for the marker to name: its timestamp columns (its
    // event time is one), else all. Not a join key: the optimizer would infer a copy of the
    // marker over the probe side's key and push it into the probe side.
    let mut columns: HashMap<String, Vec<String>> = HashMap::new();
    for name in versioned {
        let text = name.to_string();
        let reference = TableReference::parse_str(&text);
        let provider = ctx.table_provider(reference).await.map_err(|_| {
            DataFusionError::Plan(format!(
                "FOR SYSTEM_TIME AS OF needs a table or view of the catalog; {text} is not one \
                 (a WITH query cannot be versioned: create it as a view)"
            ))
        })?;
        let schema = provider.schema();
        let timestamps: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
            .map(|f| f.name().clone())
            .collect();
        let named = if timestamps.is_empty() {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            timestamps
        };
        if named.is_empty() {
            return plan_err!("the versioned table {text} has no columns");
        }
        columns.insert(text, named);
    }
    visit(statement, |from| {
        for join in &mut from.joins {
            let Some(time) = marked_time(&join.relation).cloned() else {
                continue;
            };
            let TableFactor::Table {
                name, alias, args, ..
            } = &mut join.relation
            else {
                continue;
            };
            *args = None;
            let qualifier: Vec<Ident> = match alias {
                Some(alias) => vec![alias.name.clone()],
                None => name
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident().cloned())
                    .collect(),
            };
            let Some(named) = columns.get(&name.to_string()) else {
                return plan_err!("the versioned table {name} was not looked up");
            };
            let mut args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(time))];
            for column in named {
                let mut path = qualifier.clone();
                path.push(Ident::with_quote('"', column.as_str()));
                args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(
                    SqlExpr::CompoundIdentifier(path),
                )));
            }
            let marker = SqlExpr::Function(datafusion::sql::sqlparser::ast::Function {
                name: ObjectName::from(vec![Ident::new(SYSTEM_TIME_AS_OF)]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(
                    datafusion::sql::sqlparser::ast::FunctionArgumentList {
                        duplicate_treatment: None,
                        args,
                        clauses: vec![],
                    },
                ),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
            let on = match &mut join.join_operator {
                JoinOperator::Join(JoinConstraint::On(on))
                | JoinOperator::Inner(JoinConstraint::On(on))
                | JoinOperator::Left(JoinConstraint::On(on))
                | JoinOperator::LeftOuter(JoinConstraint::On(on)) => on,
                JoinOperator::Join(_)
                | JoinOperator::Inner(_)
                | JoinOperator::Left(_)
                | JoinOperator::LeftOuter(_) => {
                    return plan_err!(
                        "a temporal join (FOR SYSTEM_TIME AS OF) needs an ON condition with an \
                         equality on the versioned table's primary key"
                    );
                }
                _ => {
                    return plan_err!(
                        "a temporal join (FOR SYSTEM_TIME AS OF) is an INNER or a LEFT join, as \
                         in Flink"
                    );
                }
            };
            let condition = std::mem::replace(
                on,
                SqlExpr::Value(datafusion::sql::sqlparser::ast::Value::Boolean(true).into()),
            );
            *on = SqlExpr::BinaryOp {
                left: Box::new(SqlExpr::Nested(Box::new(condition))),
                op: BinaryOperator::And,
                right: Box::new(marker),
            };
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clause_becomes_table_arguments() {
        let sql = "SELECT * FROM o JOIN r FOR SYSTEM_TIME AS OF o.ts AS v ON o.k = v.k";
        assert_eq!(
            prepare_temporal_syntax(sql).unwrap(),
            "SELECT * FROM o JOIN r (__sabot_system_time_as_of(o.ts)) AS v ON o.k = v.k"
        );
        // Lower case, no alias, a quoted column, line breaks.
        let sql = "select * from o join r for\n system_time as of \"O\".\"Ts\"\non o.k = r.k";
        assert_eq!(
            prepare_temporal_syntax(sql).unwrap(),
            "select * from o join r (__sabot_system_time_as_of(\"O\".\"Ts\"))\non o.k = r.k"
        );
        // Other literals keep their escapes.
        let sql = "SELECT 'O''Brien', \"a\" FROM o JOIN r FOR SYSTEM_TIME AS OF o.ts ON o.k = r.k";
        assert_eq!(
            prepare_temporal_syntax(sql).unwrap(),
            "SELECT 'O''Brien', \"a\" FROM o JOIN r (__sabot_system_time_as_of(o.ts)) ON o.k = r.k"
        );
        // Nothing to rewrite: borrowed as it is; a string literal is not the clause.
        let sql = "SELECT 'FOR SYSTEM_TIME AS OF x' FROM t";
        assert!(matches!(
            prepare_temporal_syntax(sql).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn an_expression_is_refused() {
        let sql = "SELECT * FROM o JOIN r FOR SYSTEM_TIME AS OF o.ts - INTERVAL '1' SECOND ON true";
        let err = prepare_temporal_syntax(sql).unwrap_err().to_string();
        assert!(err.contains("an expression is not supported"), "{err}");
        let sql = "SELECT * FROM o JOIN r FOR SYSTEM_TIME AS OF";
        assert!(prepare_temporal_syntax(sql).is_err());
    }
}
