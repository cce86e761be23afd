//! Flink-style `CREATE TABLE`: parsing and resolution into a [`TableDefinition`].
//!
//! ```sql
//! CREATE TABLE [IF NOT EXISTS] name (
//!   col TYPE [NOT NULL] [METADATA [FROM 'key'] [VIRTUAL]] [COMMENT '...'],
//!   col AS expr [COMMENT '...'],                         -- computed column
//!   WATERMARK FOR col AS expr,                            -- event time
//!   [PRIMARY KEY (col, ...) NOT ENFORCED]
//! ) [COMMENT '...'] [WITH ('key' = 'value', ...)]
//! ```
//!
//! [`parse_create_table`] only claims statements that use one of these extensions (a WITH
//! clause, a watermark, a computed or metadata column); a plain `CREATE TABLE t (a INT)` or a
//! `CREATE TABLE ... AS SELECT` is left to DataFusion. [`resolve`] then types the columns with
//! DataFusion's SQL type rules and plans the expressions against the session.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DFSchema, Result, TableReference, plan_datafusion_err, plan_err};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::planner::ContextProvider;
use datafusion::logical_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion::prelude::SessionContext;
use datafusion::sql::planner::SqlToRel;
use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, ColumnOptionDef, DataType as SqlType, Expr as SqlExpr, Ident, Value,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::complexity::check_expr;
use crate::catalog::options::TableOptions;
use crate::catalog::table_definition::{
    ColumnDefinition, ColumnKind, TableDefinition, WatermarkDefinition,
};

/// A column as written.
#[derive(Debug, Clone)]
pub enum ColumnSyntax {
    /// `name TYPE [NOT NULL] [METADATA ...]`
    Declared {
        /// Column name.
        name: Ident,
        /// Declared type.
        data_type: Box<SqlType>,
        /// `NOT NULL` given.
        not_null: bool,
        /// `METADATA [FROM 'key'] [VIRTUAL]`: (key, virtual).
        metadata: Option<(Option<String>, bool)>,
    },
    /// `name AS expr`
    Computed {
        /// Column name.
        name: Ident,
        /// The expression.
        expr: Box<SqlExpr>,
    },
}

/// A parsed `CREATE TABLE` (see the module docs).
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// Table name.
    pub name: String,
    /// `IF NOT EXISTS` given.
    pub if_not_exists: bool,
    /// Columns in order.
    pub columns: Vec<ColumnSyntax>,
    /// `WATERMARK FOR col AS expr`.
    pub watermark: Option<(Ident, SqlExpr)>,
    /// `PRIMARY KEY (...)` columns.
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (...)` columns.
    pub partition_by: Vec<String>,
    /// WITH options.
    pub options: BTreeMap<String, String>,
    /// The statement text.
    pub sql: String,
}

impl CreateTable {
    fn uses_extensions(&self) -> bool {
        !self.options.is_empty()
            || self.watermark.is_some()
            || self.columns.iter().any(|c| match c {
                ColumnSyntax::Computed { .. } => true,
                ColumnSyntax::Declared { metadata, .. } => metadata.is_some(),
            })
    }
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

fn normalize(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// Parses a Flink-style `CREATE TABLE`; `Ok(None)` when DataFusion should handle the statement.
pub fn parse_create_table(sql: &str) -> Result<Option<CreateTable>> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(|e| plan_datafusion_err!("{e}"))?;
    if !parser.parse_keyword(Keyword::CREATE) {
        return Ok(None);
    }
    let _ = parser.parse_keyword(Keyword::TEMPORARY);
    if !parser.parse_keyword(Keyword::TABLE) {
        return Ok(None);
    }
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = match parser.parse_object_name(false) {
        Ok(n) => n,
        Err(_) => return Ok(None),
    };
    if parser.peek_token().token != Token::LParen {
        // CREATE TABLE t AS SELECT ..., or something DataFusion will explain.
        return Ok(None);
    }
    let result = parse_body(&mut parser);
    let mut table = match result {
        Ok(t) => t,
        // Only claim the error when the statement clearly uses Flink syntax.
        Err(e) => {
            let upper = sql.to_ascii_uppercase();
            if upper.contains("WATERMARK") || upper.contains("METADATA") || upper.contains(" WITH")
            {
                return plan_err!("CREATE TABLE {name}: {e}");
            }
            return Ok(None);
        }
    };
    table.name = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(normalize)
        .collect::<Vec<_>>()
        .join(".");
    table.if_not_exists = if_not_exists;
    table.sql = sql.trim().to_string();
    if !table.uses_extensions() {
        return Ok(None);
    }
    // Computed columns and the watermark are planned (and printed) recursively.
    for column in &mut table.columns {
        if let ColumnSyntax::Computed { expr, .. } = column {
            let taken = std::mem::replace(expr.as_mut(), SqlExpr::Value(Value::Null.into()));
            **expr = check_expr(taken)?;
        }
    }
    if let Some((column, expr)) = table.watermark.take() {
        table.watermark = Some((column, check_expr(expr)?));
    }
    Ok(Some(table))
}

fn parse_body(p: &mut Parser) -> std::result::Result<CreateTable, ParserError> {
    p.expect_token(&Token::LParen)?;
    let mut table = CreateTable {
        name: String::new(),
        if_not_exists: false,
        columns: Vec::new(),
        watermark: None,
        primary_key: Vec::new(),
        partition_by: Vec::new(),
        options: BTreeMap::new(),
        sql: String::new(),
    };
    loop {
        let next = p.peek_token().token;
        if is_word(&next, "WATERMARK") {
            p.next_token();
            p.expect_keyword(Keyword::FOR)?;
            let column = p.parse_identifier()?;
            p.expect_keyword(Keyword::AS)?;
            let expr = p.parse_expr()?;
            if table.watermark.is_some() {
                return Err(ParserError::ParserError(
                    "a table can have only one WATERMARK".into(),
                ));
            }
            table.watermark = Some((column, expr));
        } else if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY])
            || (p.parse_keyword(Keyword::CONSTRAINT)
                && p.parse_identifier().is_ok()
                && p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]))
        {
            p.expect_token(&Token::LParen)?;
            let cols = p.parse_comma_separated(|p| p.parse_identifier())?;
            p.expect_token(&Token::RParen)?;
            let _ = p.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
            table.primary_key = cols.iter().map(normalize).collect();
        } else {
            let name = p.parse_identifier()?;
            if p.parse_keyword(Keyword::AS) {
                let expr = p.parse_expr()?;
                skip_comment(p)?;
                table.columns.push(ColumnSyntax::Computed {
                    name,
                    expr: Box::new(expr),
                });
            } else {
                let data_type = p.parse_data_type()?;
                let mut not_null = false;
                let mut metadata = None;
                loop {
                    if p.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                        not_null = true;
                    } else if p.parse_keyword(Keyword::NULL) {
                        not_null = false;
                    } else if is_word(&p.peek_token().token, "METADATA") {
                        p.next_token();
                        let key = if p.parse_keyword(Keyword::FROM) {
                            Some(p.parse_literal_string()?)
                        } else {
                            None
                        };
                        let is_virtual = if is_word(&p.peek_token().token, "VIRTUAL") {
                            p.next_token();
                            true
                        } else {
                            false
                        };
                        metadata = Some((key, is_virtual));
                    } else if p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
                        let _ = p.parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
                        table.primary_key = vec![normalize(&name)];
                    } else if !skip_comment(p)? {
                        break;
                    }
                }
                table.columns.push(ColumnSyntax::Declared {
                    name,
                    data_type: Box::new(data_type),
                    not_null,
                    metadata,
                });
            }
        }
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen)?;
        break;
    }
    skip_comment(p)?;
    if p.parse_keyword(Keyword::PARTITIONED) {
        p.expect_keyword(Keyword::BY)?;
        p.expect_token(&Token::LParen)?;
        let cols = p.parse_comma_separated(|p| p.parse_identifier())?;
        p.expect_token(&Token::RParen)?;
        table.partition_by = cols.iter().map(normalize).collect();
    }
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)?;
        loop {
            let key = p.parse_literal_string()?;
            p.expect_token(&Token::Eq)?;
            let value = p.parse_literal_string()?;
            if table.options.insert(key.clone(), value).is_some() {
                return Err(ParserError::ParserError(format!(
                    "option '{key}' is given twice"
                )));
            }
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen)?;
    }
    let _ = p.consume_token(&Token::SemiColon);
    let rest = p.peek_token();
    if rest.token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "unexpected {} after the table definition at {}",
            rest.token, rest.span.start
        )));
    }
    Ok(table)
}

/// Skips `COMMENT 'text'`; returns whether there was one.
fn skip_comment(p: &mut Parser) -> std::result::Result<bool, ParserError> {
    if p.parse_keyword(Keyword::COMMENT) {
        p.parse_literal_string()?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Knows only the configuration: enough for DataFusion's SQL type conversion.
struct TypeProvider<'a> {
    options: &'a ConfigOptions,
}

impl ContextProvider for TypeProvider<'_> {
    fn get_table_source(&self, name: TableReference) -> Result<Arc<dyn TableSource>> {
        plan_err!("no table {name} here")
    }
    fn get_function_meta(&self, _name: &str) -> Option<Arc<ScalarUDF>> {
        None
    }
    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }
    fn get_aggregate_meta(&self, _name: &str) -> Option<Arc<AggregateUDF>> {
        None
    }
    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }
    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }
    fn options(&self) -> &ConfigOptions {
        self.options
    }
    fn udf_names(&self) -> Vec<String> {
        vec![]
    }
    fn higher_order_function_names(&self) -> Vec<String> {
        vec![]
    }
    fn udaf_names(&self) -> Vec<String> {
        vec![]
    }
    fn udwf_names(&self) -> Vec<String> {
        vec![]
    }
}

/// Flink types DataFusion does not know: `TIMESTAMP_LTZ(p)`, `BYTES`.
fn flink_type(data_type: &SqlType) -> Option<DataType> {
    let SqlType::Custom(name, args) = data_type else {
        return None;
    };
    let name = name.to_string().to_ascii_uppercase();
    match name.as_str() {
        "TIMESTAMP_LTZ" => {
            let unit = match args.first().map(|a| a.as_str()) {
                Some("0") => TimeUnit::Second,
                None | Some("3") => TimeUnit::Millisecond,
                Some("6") => TimeUnit::Microsecond,
                _ => TimeUnit::Nanosecond,
            };
            Some(DataType::Timestamp(unit, Some("UTC".into())))
        }
        "BYTES" => Some(DataType::Binary),
        _ => None,
    }
}

/// Types the columns and plans the expressions of `table` (see the module docs).
pub fn resolve(table: CreateTable, ctx: &SessionContext) -> Result<TableDefinition> {
    let state: SessionState = ctx.state();
    let provider = TypeProvider {
        options: state.config_options(),
    };
    let planner = SqlToRel::new(&provider);
    let mut columns: Vec<ColumnDefinition> = Vec::with_capacity(table.columns.len());
    let mut seen = std::collections::HashSet::new();
    // Declared columns first: computed columns are planned over them.
    for column in &table.columns {
        if let ColumnSyntax::Declared {
            name,
            data_type,
            not_null,
            metadata,
        } = column
        {
            let name_str = normalize(name);
            let data_type = match flink_type(data_type) {
                Some(t) => t,
                None => {
                    let options = if *not_null {
                        vec![ColumnOptionDef {
                            name: None,
                            option: ColumnOption::NotNull,
                        }]
                    } else {
                        vec![]
                    };
                    let schema = planner
                        .build_schema(vec![ColumnDef {
                            name: name.clone(),
                            data_type: data_type.as_ref().clone(),
                            options,
                        }])
                        .map_err(|e| {
                            plan_datafusion_err!(
                                "column {name_str} of table {}: unsupported type {data_type} ({e})",
                                table.name
                            )
                        })?;
                    schema.field(0).data_type().clone()
                }
            };
            let kind = match metadata {
                Some((key, is_virtual)) => ColumnKind::Metadata {
                    key: key.clone().unwrap_or_else(|| name_str.clone()),
                    is_virtual: *is_virtual,
                },
                None => ColumnKind::Physical,
            };
            columns.push(ColumnDefinition {
                name: name_str,
                data_type,
                nullable: !*not_null,
                kind,
            });
        }
    }
    let declared_schema = Arc::new(Schema::new(
        columns.iter().map(|c| c.field()).collect::<Vec<_>>(),
    ));
    let declared_dfschema = DFSchema::try_from(Arc::clone(&declared_schema))?;
    // Then computed columns, in declaration order, placed where they were declared.
    let mut ordered = Vec::with_capacity(table.columns.len());
    let mut declared = columns.into_iter();
    for column in &table.columns {
        match column {
            ColumnSyntax::Declared { .. } => {
                if let Some(c) = declared.next() {
                    ordered.push(c);
                }
            }
            ColumnSyntax::Computed { name, expr } => {
                let name_str = normalize(name);
                let sql = expr.to_string();
                let logical = ctx.parse_sql_expr(&sql, &declared_dfschema).map_err(|e| {
                    plan_datafusion_err!("computed column {name_str} of table {}: {e}", table.name)
                })?;
                let physical = state.create_physical_expr(logical.clone(), &declared_dfschema)?;
                let data_type = physical.data_type(&declared_schema)?;
                ordered.push(ColumnDefinition {
                    name: name_str,
                    data_type,
                    nullable: true,
                    kind: ColumnKind::Computed { sql, expr: logical },
                });
            }
        }
    }
    for c in &ordered {
        if !seen.insert(c.name.clone()) {
            return plan_err!("table {} declares column {} twice", table.name, c.name);
        }
    }
    let full_schema = Arc::new(Schema::new(
        ordered.iter().map(|c| c.field()).collect::<Vec<_>>(),
    ));
    let watermark = match &table.watermark {
        Some((column, expr)) => {
            let column = normalize(column);
            let Some(time) = ordered.iter().find(|c| c.name == column) else {
                return plan_err!(
                    "WATERMARK FOR {column}: table {} has no column {column}",
                    table.name
                );
            };
            if crate::functions::proctime::is_proctime_field(&time.field()) {
                return plan_err!(
                    "WATERMARK FOR {column}: the column is PROCTIME(), a processing-time \
                     attribute, which needs no watermark; put the watermark on an event-time \
                     column, or leave it out"
                );
            }
            if !matches!(time.data_type, DataType::Timestamp(_, _)) {
                return plan_err!(
                    "WATERMARK FOR {column}: the column is {}, but event time must be a \
                     TIMESTAMP; declare it as TIMESTAMP(3) or add a computed column such as \
                     `ts AS TO_TIMESTAMP_MILLIS({column})` and put the watermark on that",
                    time.data_type
                );
            }
            let full_dfschema = DFSchema::try_from(Arc::clone(&full_schema))?;
            let sql = expr.to_string();
            let logical = ctx
                .parse_sql_expr(&sql, &full_dfschema)
                .map_err(|e| plan_datafusion_err!("WATERMARK FOR {column}: {e}"))?;
            let physical = state.create_physical_expr(logical.clone(), &full_dfschema)?;
            let wm_type = physical.data_type(&full_schema)?;
            if !matches!(wm_type, DataType::Timestamp(_, _)) {
                return plan_err!(
                    "WATERMARK FOR {column} AS {sql}: the expression is {wm_type}, but it must be a \
                     TIMESTAMP, e.g. {column} - INTERVAL '5' SECOND"
                );
            }
            Some(WatermarkDefinition {
                column,
                sql,
                expr: logical,
            })
        }
        None => None,
    };
    if !table.partition_by.is_empty() {
        let connector = table.options.get("connector").map(String::as_str);
        if connector != Some("filesystem") {
            return plan_err!(
                "PARTITIONED BY: table {} is a {} table; only filesystem tables are partitioned \
                 (into one directory per value, e.g. dt=2024-01-01/)",
                table.name,
                connector.unwrap_or("connector-less")
            );
        }
        for column in &table.partition_by {
            match ordered.iter().find(|c| &c.name == column) {
                None => {
                    return plan_err!(
                        "PARTITIONED BY ({column}): table {} has no column {column}",
                        table.name
                    );
                }
                Some(c) if c.is_computed() => {
                    return plan_err!(
                        "PARTITIONED BY ({column}): the column is computed; partition by a \
                         physical column of table {}",
                        table.name
                    );
                }
                Some(_) => {}
            }
        }
    }
    Ok(TableDefinition {
        options: TableOptions::new(table.name.clone(), table.options),
        name: table.name,
        columns: ordered,
        watermark,
        primary_key: table.primary_key,
        partition_by: table.partition_by,
        sql: table.sql,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flink_ddl() {
        let t = parse_create_table(
            "CREATE TABLE bids (
               auction BIGINT, price BIGINT NOT NULL, date_time TIMESTAMP(3),
               off BIGINT METADATA FROM 'offset' VIRTUAL,
               doubled AS price * 2,
               WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
             ) WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid')",
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.name, "bids");
        assert_eq!(t.columns.len(), 5);
        assert!(matches!(
            &t.columns[3],
            ColumnSyntax::Declared { metadata: Some((Some(k), true)), .. } if k == "offset"
        ));
        assert!(matches!(&t.columns[4], ColumnSyntax::Computed { .. }));
        assert_eq!(t.watermark.as_ref().unwrap().0.value, "date_time");
        assert_eq!(t.options.get("connector").unwrap(), "nexmark");
    }

    #[test]
    fn plain_tables_and_ctas_go_to_datafusion() {
        assert!(
            parse_create_table("CREATE TABLE t (a INT, b VARCHAR)")
                .unwrap()
                .is_none()
        );
        assert!(
            parse_create_table("CREATE TABLE t AS SELECT 1")
                .unwrap()
                .is_none()
        );
        assert!(parse_create_table("SELECT 1").unwrap().is_none());
    }

    #[test]
    fn syntax_errors_in_flink_ddl_are_reported() {
        let err =
            parse_create_table("CREATE TABLE t (a INT, WATERMARK a AS a) WITH ('connector'='x')")
                .unwrap_err()
                .to_string();
        assert!(err.contains("CREATE TABLE t"), "{err}");
        let err = parse_create_table("CREATE TABLE t (a INT) WITH ('k' = 'v', 'k' = 'w')")
            .unwrap_err()
            .to_string();
        assert!(err.contains("given twice"), "{err}");
    }
}
