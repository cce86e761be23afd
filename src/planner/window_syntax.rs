//! Window syntax normalization, before DataFusion plans a statement.
//!
//! Two rewriters turn the three window spellings of Flink SQL into the one form the
//! [`WindowTvfPlanner`](super::window_tvf::WindowTvfPlanner) plans:
//!
//! 1. [`prepare_window_syntax`] works on tokens, because `TABLE t` and `TABLE t PARTITION BY k`
//!    are not expressions the SQL parser accepts as function arguments: inside a TUMBLE, HOP or
//!    SESSION call it turns `TABLE t` into `t` and `PARTITION BY k` into a marker argument
//!    `, __sabot_partition_by(k)`.
//! 2. [`rewrite_group_windows`] works on the parsed statement: `GROUP BY TUMBLE(ts, size)` (and
//!    HOP, SESSION) becomes a window TVF in FROM grouped by `window_start, window_end`, and
//!    `TUMBLE_START(...)`, `TUMBLE_END(...)`, `TUMBLE_ROWTIME(...)` become the window columns.

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::common::{DataFusionError, plan_datafusion_err, plan_err};
use datafusion::error::Result;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Query,
    Select, SetExpr, Statement, TableFactor, VisitMut, VisitorMut, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// Name of the marker function carrying SESSION's `PARTITION BY` keys.
pub const PARTITION_BY_MARKER: &str = "__sabot_partition_by";

const WINDOW_FUNCTIONS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn is_space(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// Index of the next non-whitespace token at or after `i`.
fn skip_space(tokens: &[Token], mut i: usize) -> usize {
    while i < tokens.len() && is_space(&tokens[i]) {
        i += 1;
    }
    i
}

/// Rewrites `TABLE t [PARTITION BY k]` arguments of window calls (see the module docs).
/// Returns the text unchanged when there is nothing to rewrite.
pub fn prepare_window_syntax(sql: &str) -> Result<Cow<'_, str>> {
    let upper = sql.to_ascii_uppercase();
    if !WINDOW_FUNCTIONS.iter().any(|f| upper.contains(f)) || !upper.contains("TABLE") {
        return Ok(Cow::Borrowed(sql));
    }
    let dialect = GenericDialect {};
    // Literals keep their escapes (`'O''Brien'`): the text is rebuilt from these tokens.
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| DataFusionError::SQL(Box::new(e.into()), None))?;

    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    // Depth of parentheses inside each open window call, innermost last.
    let mut calls: Vec<usize> = Vec::new();
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if WINDOW_FUNCTIONS.iter().any(|f| is_word(token, f)) {
            let next = skip_space(&tokens, i + 1);
            if next < tokens.len() && tokens[next] == Token::LParen {
                out.extend_from_slice(&tokens[i..=next]);
                calls.push(1);
                i = next + 1;
                continue;
            }
        }
        match token {
            Token::LParen => {
                if let Some(depth) = calls.last_mut() {
                    *depth += 1;
                }
            }
            Token::RParen => {
                if let Some(depth) = calls.last_mut() {
                    *depth -= 1;
                    if *depth == 0 {
                        calls.pop();
                    }
                }
            }
            _ => {}
        }
        // A `TABLE name` argument directly inside a window call.
        let at_argument_start = calls.last() == Some(&1)
            && out
                .iter()
                .rev()
                .find(|t| !is_space(t))
                .is_some_and(|t| matches!(t, Token::LParen | Token::Comma | Token::RArrow));
        if at_argument_start && is_word(token, "TABLE") {
            changed = true;
            let mut j = skip_space(&tokens, i + 1);
            // The table name: word (. word)*
            while j < tokens.len() {
                match &tokens[j] {
                    Token::Word(_) | Token::Period => {
                        out.push(tokens[j].clone());
                        j += 1;
                    }
                    _ => break,
                }
            }
            let k = skip_space(&tokens, j);
            let by = skip_space(&tokens, k + 1);
            if k < tokens.len()
                && is_word(&tokens[k], "PARTITION")
                && by < tokens.len()
                && is_word(&tokens[by], "BY")
            {
                let keys_start = skip_space(&tokens, by + 1);
                let (keys, end) = partition_keys(&tokens, keys_start)?;
                out.push(Token::Comma);
                out.push(Token::Whitespace(Whitespace::Space));
                out.push(Token::make_word(PARTITION_BY_MARKER, None));
                out.push(Token::LParen);
                out.extend(keys);
                out.push(Token::RParen);
                i = end;
            } else {
                i = j;
            }
            continue;
        }
        out.push(token.clone());
        i += 1;
    }
    if !changed {
        return Ok(Cow::Borrowed(sql));
    }
    Ok(Cow::Owned(out.iter().map(|t| t.to_string()).collect()))
}

/// The keys after `PARTITION BY`: a parenthesized list or one (qualified) name.
fn partition_keys(tokens: &[Token], start: usize) -> Result<(Vec<Token>, usize)> {
    if start < tokens.len() && tokens[start] == Token::LParen {
        let mut depth = 0;
        for (j, t) in tokens.iter().enumerate().skip(start) {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok((tokens[start + 1..j].to_vec(), j + 1));
                    }
                }
                _ => {}
            }
        }
        return plan_err!("unclosed parenthesis after SESSION ... PARTITION BY");
    }
    let mut j = start;
    while j < tokens.len() && matches!(tokens[j], Token::Word(_) | Token::Period) {
        j += 1;
    }
    if j == start {
        return plan_err!(
            "PARTITION BY in SESSION needs a column name or a parenthesized list of columns"
        );
    }
    Ok((tokens[start..j].to_vec(), j))
}

/// Rewrites group-window syntax in every query of `statement` (see the module docs).
pub fn rewrite_group_windows(statement: &mut Statement) -> Result<()> {
    let mut rewriter = GroupWindowRewriter;
    match statement.visit(&mut rewriter) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(*e),
    }
}

struct GroupWindowRewriter;

impl VisitorMut for GroupWindowRewriter {
    type Break = Box<DataFusionError>;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Self::Break> {
        match data_argument_as_subquery(factor) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(Box::new(e)),
        }
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            match rewrite_select(select) {
                Ok(Some(kind)) => {
                    if let Some(order_by) = query.order_by.as_mut()
                        && let ControlFlow::Break(e) = replace_window_properties(order_by, kind)
                    {
                        return ControlFlow::Break(e);
                    }
                }
                Ok(None) => {}
                Err(e) => return ControlFlow::Break(Box::new(e)),
            }
        }
        ControlFlow::Continue(())
    }
}

/// Turns the DATA argument `t` of a window TVF into `(SELECT * FROM t)`.
///
/// DataFusion resolves the tables of a statement before planning it, by walking its relations;
/// a bare name in a function argument is not a relation and would not be found. A subquery is.
fn data_argument_as_subquery(factor: &mut TableFactor) -> Result<()> {
    let args: &mut Vec<FunctionArg> = match factor {
        TableFactor::TableFunction {
            expr: SqlExpr::Function(f),
            ..
        } if WINDOW_FUNCTIONS
            .iter()
            .any(|w| f.name.to_string().eq_ignore_ascii_case(w)) =>
        {
            match &mut f.args {
                FunctionArguments::List(list) => &mut list.args,
                _ => return Ok(()),
            }
        }
        TableFactor::Table {
            name,
            args: Some(args),
            ..
        } if WINDOW_FUNCTIONS
            .iter()
            .any(|w| name.to_string().eq_ignore_ascii_case(w)) =>
        {
            &mut args.args
        }
        _ => return Ok(()),
    };
    let data = args.iter_mut().find_map(|a| match a {
        FunctionArg::Named {
            name,
            arg: FunctionArgExpr::Expr(e),
            ..
        } if name.value.eq_ignore_ascii_case("DATA") => Some(e),
        _ => None,
    });
    let data = match data {
        Some(e) => Some(e),
        None => args.iter_mut().find_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        }),
    };
    let Some(data) = data else {
        return Ok(());
    };
    if matches!(
        data,
        SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)
    ) {
        let dialect = GenericDialect {};
        let query = Parser::new(&dialect)
            .try_with_sql(&format!("SELECT * FROM {data}"))
            .and_then(|mut p| p.parse_query())
            .map_err(|e| plan_datafusion_err!("window function input `{data}`: {e}"))?;
        *data = SqlExpr::Subquery(query);
    }
    Ok(())
}

/// A group window found in GROUP BY.
struct GroupWindow {
    kind: &'static str,
    args: Vec<SqlExpr>,
}

fn function_args(args: &FunctionArguments) -> Option<Vec<SqlExpr>> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn group_window_of(expr: &SqlExpr) -> Option<GroupWindow> {
    let SqlExpr::Function(f) = expr else {
        return None;
    };
    let name = f.name.to_string().to_ascii_uppercase();
    let kind = ["TUMBLE", "HOP", "SESSION"]
        .into_iter()
        .find(|k| *k == name)?;
    Some(GroupWindow {
        kind,
        args: function_args(&f.args)?,
    })
}

/// The last identifier of a column reference: `t.ts` -> `ts`.
fn unqualified(expr: &SqlExpr) -> Result<Ident> {
    match expr {
        SqlExpr::Identifier(i) => Ok(i.clone()),
        SqlExpr::CompoundIdentifier(parts) => parts
            .last()
            .cloned()
            .ok_or_else(|| plan_datafusion_err!("empty column name")),
        other => plan_err!(
            "group window functions need a time column, got `{other}`; compute it in a computed \
             column or a subquery"
        ),
    }
}

/// Rewrites one SELECT; returns the window kind when it had a group window.
fn rewrite_select(select: &mut Select) -> Result<Option<&'static str>> {
    let GroupByExpr::Expressions(group_exprs, _) = &mut select.group_by else {
        return Ok(None);
    };
    let windows: Vec<usize> = group_exprs
        .iter()
        .enumerate()
        .filter(|(_, e)| group_window_of(e).is_some())
        .map(|(i, _)| i)
        .collect();
    let index = match windows.as_slice() {
        [] => return Ok(None),
        [i] => *i,
        _ => return plan_err!("a GROUP BY may contain only one group window function"),
    };
    let Some(window) = group_window_of(&group_exprs[index]) else {
        return Ok(None);
    };
    let expected = match window.kind {
        "HOP" => 3,
        _ => 2,
    };
    if window.args.len() != expected {
        let usage = match window.kind {
            "TUMBLE" => "TUMBLE(time_col, INTERVAL 'size' unit)",
            "HOP" => "HOP(time_col, INTERVAL 'slide' unit, INTERVAL 'size' unit)",
            _ => "SESSION(time_col, INTERVAL 'gap' unit)",
        };
        return plan_err!(
            "wrong number of arguments in GROUP BY {}; usage: {usage}",
            window.kind
        );
    }
    let time = unqualified(&window.args[0])?;
    let other_keys: Vec<SqlExpr> = group_exprs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, e)| e.clone())
        .collect();

    // Sessions of a grouped query are per key.
    let mut partition = String::new();
    if window.kind == "SESSION" && !other_keys.is_empty() {
        let keys = other_keys
            .iter()
            .map(|k| unqualified(k).map(|i| i.to_string()))
            .collect::<Result<Vec<_>>>()
            .map_err(|_| {
                plan_datafusion_err!(
                    "GROUP BY SESSION(...) with a computed key: compute the key in a subquery and \
                     group by its column"
                )
            })?;
        partition = format!("{PARTITION_BY_MARKER}({}), ", keys.join(", "));
    }

    // The FROM clause becomes the window TVF over the original relation.
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return plan_err!(
            "GROUP BY {} needs a single table or subquery in FROM; for a join, put it in a \
             subquery: FROM (SELECT ... FROM a JOIN b ON ...) t",
            window.kind
        );
    }
    let relation = &select.from[0].relation;
    let (input, alias) = match relation {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let alias = match alias {
                Some(a) => a.name.to_string(),
                None => name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
            };
            (name.to_string(), alias)
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => (
            format!("({subquery})"),
            alias
                .as_ref()
                .map(|a| a.name.to_string())
                .unwrap_or_default(),
        ),
        other => {
            return plan_err!(
                "GROUP BY {} over `{other}` is not supported; use a table or a subquery in FROM",
                window.kind
            );
        }
    };
    let rest: Vec<String> = window.args[1..].iter().map(|a| a.to_string()).collect();
    let mut text = format!(
        "TABLE({}({input}, {partition}DESCRIPTOR({time}), {}))",
        window.kind,
        rest.join(", ")
    );
    if !alias.is_empty() {
        text.push_str(&format!(" AS {alias}"));
    }
    let dialect = GenericDialect {};
    let factor = Parser::new(&dialect)
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_table_factor())
        .map_err(|e| plan_datafusion_err!("rewriting GROUP BY {}: {e}", window.kind))?;
    select.from[0].relation = factor;

    // GROUP BY the window columns instead of the window function (window_time too, so that
    // `TUMBLE_ROWTIME` can be selected; it is determined by the window anyway).
    group_exprs.remove(index);
    for (i, column) in ["window_start", "window_end", "window_time"]
        .iter()
        .enumerate()
    {
        group_exprs.insert(index + i, SqlExpr::Identifier(Ident::new(*column)));
    }

    let kind = window.kind;
    if let ControlFlow::Break(e) = replace_window_properties(&mut select.projection, kind) {
        return Err(*e);
    }
    if let Some(having) = select.having.as_mut()
        && let ControlFlow::Break(e) = replace_window_properties(having, kind)
    {
        return Err(*e);
    }
    Ok(Some(kind))
}

/// Replaces `TUMBLE_START(...)` and friends by the window columns.
fn replace_window_properties<V: VisitMut>(
    node: &mut V,
    kind: &'static str,
) -> ControlFlow<Box<DataFusionError>> {
    visit_expressions_mut(node, |expr| {
        let SqlExpr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let name = f.name.to_string().to_ascii_uppercase();
        let Some((prefix, property)) = name.rsplit_once('_') else {
            return ControlFlow::Continue(());
        };
        if !["TUMBLE", "HOP", "SESSION"].contains(&prefix) {
            return ControlFlow::Continue(());
        }
        if prefix != kind {
            return ControlFlow::Break(Box::new(plan_datafusion_err!(
                "{name} used with GROUP BY {kind}(...); use {kind}_{property}"
            )));
        }
        let column = match property {
            "START" => "window_start",
            "END" => "window_end",
            "ROWTIME" => "window_time",
            _ => {
                return ControlFlow::Break(Box::new(plan_datafusion_err!(
                    "{name} is not supported; use {kind}_START, {kind}_END or {kind}_ROWTIME"
                )));
            }
        };
        *expr = SqlExpr::Identifier(Ident::new(column));
        ControlFlow::Continue(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> String {
        let prepared = prepare_window_syntax(sql).unwrap().into_owned();
        let dialect = GenericDialect {};
        let mut statement = Parser::new(&dialect)
            .try_with_sql(&prepared)
            .unwrap()
            .parse_statement()
            .unwrap();
        rewrite_group_windows(&mut statement).unwrap();
        statement.to_string()
    }

    #[test]
    fn table_argument_becomes_a_name() {
        let out = prepare_window_syntax(
            "SELECT * FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))",
        )
        .unwrap();
        assert_eq!(
            out,
            "SELECT * FROM TABLE(TUMBLE(bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))"
        );
    }

    #[test]
    fn named_table_argument() {
        let out = prepare_window_syntax(
            "SELECT * FROM TABLE(HOP(DATA => TABLE s.bids, TIMECOL => DESCRIPTOR(ts), SLIDE => INTERVAL '1' SECOND, SIZE => INTERVAL '2' SECOND))",
        )
        .unwrap();
        assert!(out.contains("DATA => s.bids,"), "{out}");
    }

    #[test]
    fn session_partition_by_becomes_marker() {
        let out = prepare_window_syntax(
            "SELECT * FROM TABLE(SESSION(TABLE bids PARTITION BY bidder, DESCRIPTOR(ts), INTERVAL '5' SECOND))",
        )
        .unwrap();
        assert!(
            out.contains("SESSION(bids, __sabot_partition_by(bidder), DESCRIPTOR(ts)"),
            "{out}"
        );
        let out = prepare_window_syntax(
            "SELECT * FROM TABLE(SESSION(TABLE bids PARTITION BY (a, b), DESCRIPTOR(ts), INTERVAL '5' SECOND))",
        )
        .unwrap();
        assert!(
            out.contains("__sabot_partition_by(a, b), DESCRIPTOR"),
            "{out}"
        );
    }

    #[test]
    fn other_statements_untouched() {
        let sql = "SELECT 'TABLE(TUMBLE(' FROM t";
        assert!(matches!(
            prepare_window_syntax(sql).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn group_window_becomes_tvf() {
        let out = rewrite(
            "SELECT k, TUMBLE_START(ts, INTERVAL '10' SECOND) AS s, COUNT(*) FROM t \
             GROUP BY k, TUMBLE(ts, INTERVAL '10' SECOND) HAVING COUNT(*) > 1",
        );
        assert_eq!(
            out,
            "SELECT k, window_start AS s, COUNT(*) FROM TABLE(TUMBLE((SELECT * FROM t), \
             DESCRIPTOR(ts), INTERVAL '10' SECOND)) AS t GROUP BY k, window_start, window_end, window_time \
             HAVING COUNT(*) > 1"
        );
    }

    #[test]
    fn session_group_window_partitions_by_keys() {
        let out = rewrite(
            "SELECT bidder, SESSION_END(b.ts, INTERVAL '5' SECOND) FROM bids AS b \
             GROUP BY bidder, SESSION(b.ts, INTERVAL '5' SECOND)",
        );
        assert!(
            out.contains(
                "TABLE(SESSION((SELECT * FROM bids), __sabot_partition_by(bidder), \
                 DESCRIPTOR(ts), INTERVAL '5' SECOND)) AS b"
            ),
            "{out}"
        );
        assert!(out.contains("SELECT bidder, window_end FROM"), "{out}");
    }

    #[test]
    fn mismatched_property_is_an_error() {
        let dialect = GenericDialect {};
        let mut statement = Parser::new(&dialect)
            .try_with_sql(
                "SELECT HOP_START(ts, INTERVAL '1' SECOND, INTERVAL '2' SECOND) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' SECOND)",
            )
            .unwrap()
            .parse_statement()
            .unwrap();
        let err = rewrite_group_windows(&mut statement).unwrap_err();
        assert!(err.to_string().contains("use TUMBLE_START"), "{err}");
    }
}
