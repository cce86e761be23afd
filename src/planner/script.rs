//! Splitting a SQL script into statements, keeping where each one starts.
//!
//! Splits at `;` outside strings, comments and parentheses (the SQL tokenizer decides what is a
//! string or a comment), so `'a;b'` and `-- x; y` never split a statement.

use datafusion::common::{DataFusionError, Result};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptStatement {
    /// Statement text, without the terminating `;`.
    pub sql: String,
    /// Line of the script where it starts, 1-based.
    pub line: usize,
}

/// Byte offset of a tokenizer location (1-based line and column, columns counted in chars).
fn offset_of(text: &str, line_starts: &[usize], at: Location) -> usize {
    let line = (at.line as usize).saturating_sub(1);
    let Some(&start) = line_starts.get(line) else {
        return text.len();
    };
    let column = (at.column as usize).saturating_sub(1);
    text[start..]
        .char_indices()
        .nth(column)
        .map(|(i, _)| start + i)
        .unwrap_or(text.len())
}

/// The tokens of `text` with their locations, and the byte offset where each line starts (for
/// [`offset_of`]).
fn tokenize(text: &str) -> Result<(Vec<TokenWithSpan>, Vec<usize>)> {
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .map_err(|e| DataFusionError::SQL(Box::new(e.into()), None))?;
    let line_starts = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    Ok((tokens, line_starts))
}

/// `sql` with each placeholder `$n` for which `type_of(n)` names a SQL type written as
/// `CAST($n AS type)`: the parameter types a client declares at Parse, given to DataFusion's
/// planner. Strings, quoted names and comments are left alone.
pub fn cast_placeholders(
    sql: &str,
    type_of: impl Fn(usize) -> Option<&'static str>,
) -> Result<String> {
    let (tokens, line_starts) = tokenize(sql)?;
    let mut out = String::with_capacity(sql.len() + 32);
    let mut copied = 0;
    for t in &tokens {
        let Token::Placeholder(p) = &t.token else {
            continue;
        };
        let Some(type_name) = p
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(&type_of)
        else {
            continue;
        };
        let start = offset_of(sql, &line_starts, t.span.start);
        let end = offset_of(sql, &line_starts, t.span.end);
        out.push_str(&sql[copied..start]);
        out.push_str(&format!("CAST({} AS {type_name})", &sql[start..end]));
        copied = end;
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

/// Splits `script` into its non-empty statements.
pub fn split_statements(script: &str) -> Result<Vec<ScriptStatement>> {
    let (tokens, line_starts) = tokenize(script)?;
    let mut statements = Vec::new();
    let mut depth = 0usize;
    let mut start: Option<(usize, usize)> = None; // (byte offset, line)
    let mut finish = |start: &mut Option<(usize, usize)>, end: usize| {
        if let Some((from, line)) = start.take() {
            let sql = script[from..end].trim().to_string();
            if !sql.is_empty() {
                statements.push(ScriptStatement { sql, line });
            }
        }
    };
    for t in &tokens {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::SemiColon if depth == 0 => {
                let end = offset_of(script, &line_starts, t.span.start);
                finish(&mut start, end);
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some((
                offset_of(script, &line_starts, t.span.start),
                t.span.start.line as usize,
            ));
        }
    }
    finish(&mut start, script.len());
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let script =
            "-- setup; not a split\nCREATE TABLE t (a INT);\n\nSELECT 'x;y', (1);\n  SELECT 2";
        let s = split_statements(script).unwrap();
        assert_eq!(
            s,
            vec![
                ScriptStatement {
                    sql: "CREATE TABLE t (a INT)".into(),
                    line: 2
                },
                ScriptStatement {
                    sql: "SELECT 'x;y', (1)".into(),
                    line: 4
                },
                ScriptStatement {
                    sql: "SELECT 2".into(),
                    line: 5
                },
            ]
        );
    }

    #[test]
    fn empty_statements_are_dropped() {
        assert!(
            split_statements(" ;; -- only a comment\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn multibyte_text_keeps_offsets() {
        let s = split_statements("SELECT 'é'; SELECT 'ü'").unwrap();
        assert_eq!(s[1].sql, "SELECT 'ü'");
    }

    #[test]
    fn placeholders_get_the_declared_types() {
        let typed = |n: usize| match n {
            1 => Some("BIGINT"),
            2 => Some("DOUBLE"),
            _ => None,
        };
        assert_eq!(
            cast_placeholders("SELECT $1 + 1, '$1', \"$2\", $2 * 2, $3 -- $1", typed).unwrap(),
            "SELECT CAST($1 AS BIGINT) + 1, '$1', \"$2\", CAST($2 AS DOUBLE) * 2, $3 -- $1"
        );
        assert_eq!(
            cast_placeholders("SELECT\n  'é', $1", typed).unwrap(),
            "SELECT\n  'é', CAST($1 AS BIGINT)"
        );
    }
}
