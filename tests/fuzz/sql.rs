//! SQL text: statements generated from Sabot's grammar (DDL with connector options and
//! watermarks, window TVFs and group windows, joins, nested and very long expressions,
//! settings) and mutations of every statement in `sqllogictest/`, run through an embedded
//! session as `ctx.sql` and the execution of what it returns.
//!
//! Oracle: no panic, no stack overflow (it would abort the test), no bounded query running
//! past its time bound, and every error has a message.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use datafusion::physical_plan::ExecutionPlanProperties;
use futures::StreamExt;
use sabot::SabotConfig;
use sabot::context::SabotContext;

use super::harness::{self, Outcome};

#[derive(Arbitrary, Debug)]
enum Case {
    Query(Query),
    CreateTable(CreateTable),
    Set(Setting),
    Explain(Query),
    Insert(Query),
    /// A long chain of one operator (thousands of terms).
    Chain(ChainOp, u16, Leaf),
    /// A statement of `sqllogictest/`, mutated.
    Mutated(u16, Vec<Mutation>),
    Misc(Misc),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ChainOp {
    Plus,
    Or,
    And,
    Concat,
    Cast,
    Union,
    Join,
    Not,
}

#[derive(Arbitrary, Debug)]
enum Misc {
    Show(u8),
    Describe(u8),
    DropTable(u8),
    Text(String),
}

/// The bounded tables every session has (see [`setup`]).
const TABLES: &[(&str, &[&str])] = &[
    ("gen", &["k", "v", "price", "s", "ts"]),
    ("bid", &["auction", "bidder", "price", "date_time"]),
    ("mem", &["k", "v", "s", "ts"]),
    ("files", &["k", "v", "ts"]),
];

#[derive(Arbitrary, Debug)]
struct Query {
    distinct: bool,
    items: Vec<Expr>,
    from: From,
    filter: Option<Expr>,
    group: Group,
    having: Option<Expr>,
    order: Option<(Expr, bool)>,
    limit: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum From {
    Table(u8),
    Tumble(u8, Interval, Option<Interval>),
    Hop(u8, Interval, Interval),
    Session(u8, Interval, bool),
    Join(u8, u8, JoinKind, Option<Expr>),
    IntervalJoin(u8, u8, Interval),
    Subquery(Box<Query>),
    Values(Vec<Vec<Expr>>),
}

#[derive(Arbitrary, Debug)]
enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    Cross,
}

#[derive(Arbitrary, Debug)]
enum Group {
    None,
    Window(Vec<Expr>),
    Keys(Vec<Expr>),
    Sets(Vec<Vec<u8>>),
    Rollup(Vec<u8>),
    Cube(Vec<u8>),
    /// A group window function: `GROUP BY TUMBLE(ts, size)`.
    Legacy(u8, Interval),
}

#[derive(Arbitrary, Debug, Clone)]
enum Interval {
    Seconds(i16),
    Millis(i32),
    Minutes(u8),
    Text(String),
    Days(i8),
}

#[derive(Arbitrary, Debug)]
enum Leaf {
    Column(u8),
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Timestamp(i16, u8, u8, u8, u8, u8, bool),
    Interval(Interval),
    Extreme(u8),
}

#[derive(Arbitrary, Debug)]
enum Expr {
    Leaf(Leaf),
    Binary(Box<Expr>, BinaryOp, Box<Expr>),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Call(Function, Vec<Expr>),
    Cast(Box<Expr>, SqlType),
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
    InList(Box<Expr>, Vec<Expr>),
    Between(Box<Expr>, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    Like(Box<Expr>, String),
    Aggregate(Aggregate, Box<Expr>),
    Window(u8),
    ScalarSubquery(Box<Query>),
}

#[derive(Arbitrary, Debug)]
enum BinaryOp {
    Plus,
    Minus,
    Times,
    Divide,
    Modulo,
    Eq,
    NotEq,
    Lt,
    GtEq,
    And,
    Or,
    Concat,
}

#[derive(Arbitrary, Debug)]
enum Aggregate {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    FirstValue,
    ApproxDistinct,
    Median,
    StddevPop,
    ArrayAgg,
    Grouping,
    GroupingId,
}

#[derive(Arbitrary, Debug)]
enum Function {
    Abs,
    Round,
    Upper,
    Lower,
    Substr,
    Concat,
    Coalesce,
    ToChar(String),
    DateFormat(String),
    DateTrunc(u8),
    ToTimestamp,
    Length,
    Replace,
    RegexpReplace,
    Sqrt,
    Power,
    Log,
    SplitPart,
    Mod,
    Now,
    MakeArray,
    Extract(u8),
    Tumble,
    Hop,
    Other(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SqlType {
    Int,
    BigInt,
    Double,
    Decimal(u8, u8),
    Varchar,
    Boolean,
    Date,
    Time,
    Timestamp(u8),
    TimestampTz,
    TimestampLtz,
    Interval,
    Bytea,
}

#[derive(Arbitrary, Debug)]
struct CreateTable {
    name: u8,
    columns: Vec<(u8, SqlType, Option<Expr>)>,
    watermark: Option<(u8, Interval)>,
    connector: Connector,
    options: Vec<(OptionKey, OptionValue)>,
}

#[derive(Arbitrary, Debug)]
enum Connector {
    Datagen,
    Nexmark,
    Memory,
    Filesystem,
    Kafka,
    Blackhole,
    Print,
    None,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum OptionKey {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum OptionValue {
    Number(i64),
    Text(String),
    Duration(i32, u8),
    Bool(bool),
    Format(u8),
}

#[derive(Arbitrary, Debug)]
enum Setting {
    Known(u8, OptionValue),
    Postgres(u8, OptionValue),
    Other(String, String),
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    Delete(u16, u8),
    Insert(u16, u8),
    Duplicate(u16, u8),
    Truncate(u16),
    ReplaceNumber(u16, u8),
}

const OPTION_KEYS: &[&str] = &[
    "connector",
    "format",
    "path",
    "number-of-rows",
    "rows-per-second",
    "events.num",
    "tps",
    "throttle",
    "nexmark.table.type",
    "base-time",
    "fields.k.kind",
    "fields.k.min",
    "fields.k.max",
    "fields.s.length",
    "scan.watermark.idle-timeout",
    "scan.watermark.future-tolerance",
    "topic",
    "properties.bootstrap.servers",
    "scan.startup.mode",
    "json.ignore-parse-errors",
    "csv.field-delimiter",
    "csv.quote-character",
    "sink.delivery-guarantee",
    "max-parallelism",
    "batch-size",
    "print-identifier",
];

const SETTINGS: &[&str] = &[
    "parallelism",
    "batch-size",
    "checkpoint.interval",
    "checkpoint.retained",
    "checkpoint.timeout",
    "state.backend",
    "dimension.max-rows",
    "dimension.max-bytes",
    "table.dml-sync",
    "execution.runtime-mode",
    "datafusion.execution.batch_size",
    "datafusion.execution.target_partitions",
    "datafusion.sql_parser.dialect",
];

const POSTGRES: &[&str] = &[
    "TimeZone",
    "DateStyle",
    "extra_float_digits",
    "client_encoding",
    "application_name",
    "search_path",
    "session",
    "sessioné",
    "time zone",
];

const TOKENS: &[&str] = &[
    " ",
    "(",
    ")",
    ",",
    "'",
    "\"",
    ";",
    "--",
    "/*",
    "*",
    "NULL",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "TABLE",
    "DESCRIPTOR(ts)",
    "INTERVAL '0' SECOND",
    "INTERVAL '-5' SECOND",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "0",
    "'é'",
    "'\u{0}'",
    "'🦀'",
    "é",
    "$1",
    "::timestamptz",
    "WATERMARK FOR ts AS ts",
    "TUMBLE(",
    "HOP(",
    "SESSION(",
    "PARTITION BY",
    "UNION ALL",
    "JOIN",
    "ON",
];

fn name_of(table: u8) -> (&'static str, &'static [&'static str]) {
    TABLES[table as usize % TABLES.len()]
}

fn column(table: u8, c: u8) -> &'static str {
    let (_, columns) = name_of(table);
    columns[c as usize % columns.len()]
}

/// Renders cases as SQL, bounding nesting so that most statements parse.
struct Render {
    /// The table the expressions of the current query read.
    table: u8,
    depth: usize,
}

impl Render {
    fn interval(&self, i: &Interval) -> String {
        match i {
            Interval::Seconds(s) => format!("INTERVAL '{s}' SECOND"),
            Interval::Millis(ms) => format!("INTERVAL '{ms}' MILLISECOND"),
            Interval::Minutes(m) => format!("INTERVAL '{m}' MINUTE"),
            Interval::Text(t) => format!("INTERVAL '{}'", t.replace('\'', "''")),
            Interval::Days(d) => format!("INTERVAL '{d}' DAY"),
        }
    }

    fn leaf(&self, l: &Leaf) -> String {
        match l {
            Leaf::Column(c) => column(self.table, *c).to_string(),
            Leaf::Int(i) => i.to_string(),
            Leaf::Float(f) if f.is_finite() => format!("{f:?}"),
            Leaf::Float(_) => "'NaN'::double".into(),
            Leaf::Str(s) => format!("'{}'", s.replace('\'', "''")),
            Leaf::Bool(b) => b.to_string(),
            Leaf::Null => "NULL".into(),
            Leaf::Timestamp(y, mo, d, h, mi, s, seconds) => {
                let mut t = format!(
                    "TIMESTAMP '{:04}-{:02}-{:02} {:02}:{:02}",
                    *y as i32 + 2000,
                    mo % 14,
                    d % 33,
                    h % 25,
                    mi % 61
                );
                if *seconds {
                    t.push_str(&format!(":{:02}", s % 61));
                }
                t.push('\'');
                t
            }
            Leaf::Interval(i) => self.interval(i),
            Leaf::Extreme(n) => [
                "9223372036854775807",
                "-9223372036854775808",
                "18446744073709551616",
                "1e308",
                "-1e-308",
                "0.0",
                "'9999-12-31 23:59:59'::timestamp",
                "'-4713-01-01'::date",
                "'infinity'::double",
            ][*n as usize % 9]
                .into(),
        }
    }

    fn expr(&mut self, e: &Expr) -> String {
        if self.depth > 12 {
            return "1".into();
        }
        self.depth += 1;
        let out = match e {
            Expr::Leaf(l) => self.leaf(l),
            Expr::Binary(a, op, b) => {
                let op = match op {
                    BinaryOp::Plus => "+",
                    BinaryOp::Minus => "-",
                    BinaryOp::Times => "*",
                    BinaryOp::Divide => "/",
                    BinaryOp::Modulo => "%",
                    BinaryOp::Eq => "=",
                    BinaryOp::NotEq => "<>",
                    BinaryOp::Lt => "<",
                    BinaryOp::GtEq => ">=",
                    BinaryOp::And => "AND",
                    BinaryOp::Or => "OR",
                    BinaryOp::Concat => "||",
                };
                format!("({} {op} {})", self.expr(a), self.expr(b))
            }
            Expr::Not(a) => format!("NOT ({})", self.expr(a)),
            Expr::Negate(a) => format!("-({})", self.expr(a)),
            Expr::Call(f, args) => self.call(f, args),
            Expr::Cast(a, t) => format!("CAST({} AS {})", self.expr(a), sql_type(*t)),
            Expr::Case(arms, other) => {
                let mut s = "CASE".to_string();
                for (w, t) in arms.iter().take(4) {
                    s.push_str(&format!(" WHEN {} THEN {}", self.expr(w), self.expr(t)));
                }
                if arms.is_empty() {
                    s.push_str(" WHEN true THEN 1");
                }
                if let Some(o) = other {
                    s.push_str(&format!(" ELSE {}", self.expr(o)));
                }
                s + " END"
            }
            Expr::InList(a, list) => {
                let items: Vec<String> = list.iter().take(6).map(|x| self.expr(x)).collect();
                let items = if items.is_empty() {
                    "1".to_string()
                } else {
                    items.join(", ")
                };
                format!("({} IN ({items}))", self.expr(a))
            }
            Expr::Between(a, lo, hi) => format!(
                "({} BETWEEN {} AND {})",
                self.expr(a),
                self.expr(lo),
                self.expr(hi)
            ),
            Expr::IsNull(a, not) => format!(
                "({} IS {}NULL)",
                self.expr(a),
                if *not { "NOT " } else { "" }
            ),
            Expr::Like(a, pattern) => {
                format!("({} LIKE '{}')", self.expr(a), pattern.replace('\'', "''"))
            }
            Expr::Aggregate(f, a) => {
                let arg = self.expr(a);
                match f {
                    Aggregate::Count => format!("COUNT({arg})"),
                    Aggregate::CountDistinct => format!("COUNT(DISTINCT {arg})"),
                    Aggregate::Sum => format!("SUM({arg})"),
                    Aggregate::Avg => format!("AVG({arg})"),
                    Aggregate::Min => format!("MIN({arg})"),
                    Aggregate::Max => format!("MAX({arg})"),
                    Aggregate::FirstValue => format!("FIRST_VALUE({arg})"),
                    Aggregate::ApproxDistinct => format!("APPROX_DISTINCT({arg})"),
                    Aggregate::Median => format!("MEDIAN({arg})"),
                    Aggregate::StddevPop => format!("STDDEV_POP({arg})"),
                    Aggregate::ArrayAgg => format!("ARRAY_AGG({arg})"),
                    Aggregate::Grouping => format!("GROUPING({arg})"),
                    Aggregate::GroupingId => format!("GROUPING_ID({arg})"),
                }
            }
            Expr::Window(w) => {
                ["window_start", "window_end", "window_time"][*w as usize % 3].into()
            }
            Expr::ScalarSubquery(q) => format!("({})", self.query(q)),
        };
        self.depth -= 1;
        out
    }

    fn call(&mut self, f: &Function, args: &[Expr]) -> String {
        let args: Vec<String> = args.iter().take(4).map(|a| self.expr(a)).collect();
        let first = args.first().cloned().unwrap_or_else(|| "ts".into());
        let list = args.join(", ");
        match f {
            Function::Abs => format!("abs({list})"),
            Function::Round => format!("round({list})"),
            Function::Upper => format!("upper({list})"),
            Function::Lower => format!("lower({list})"),
            Function::Substr => format!("substr({list})"),
            Function::Concat => format!("concat({list})"),
            Function::Coalesce => format!("coalesce({list})"),
            Function::ToChar(p) => format!("to_char({first}, '{}')", p.replace('\'', "''")),
            Function::DateFormat(p) => {
                format!("DATE_FORMAT({first}, '{}')", p.replace('\'', "''"))
            }
            Function::DateTrunc(u) => format!(
                "date_trunc('{}', {first})",
                [
                    "second", "minute", "hour", "day", "month", "year", "week", "bogus"
                ][*u as usize % 8]
            ),
            Function::ToTimestamp => format!("to_timestamp({list})"),
            Function::Length => format!("length({list})"),
            Function::Replace => format!("replace({list})"),
            Function::RegexpReplace => format!("regexp_replace({list})"),
            Function::Sqrt => format!("sqrt({list})"),
            Function::Power => format!("power({list})"),
            Function::Log => format!("log({list})"),
            Function::SplitPart => format!("split_part({list})"),
            Function::Mod => format!("MOD({list})"),
            Function::Now => "now()".into(),
            Function::MakeArray => format!("make_array({list})"),
            Function::Extract(u) => format!(
                "EXTRACT({} FROM {first})",
                ["YEAR", "MONTH", "DAY", "HOUR", "EPOCH", "DOW"][*u as usize % 6]
            ),
            Function::Tumble => format!("TUMBLE({list})"),
            Function::Hop => format!("HOP({list})"),
            Function::Other(name) => {
                let name: String = name
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == '_')
                    .take(20)
                    .collect();
                format!("{}({list})", if name.is_empty() { "f" } else { &name })
            }
        }
    }

    fn from(&mut self, f: &From) -> String {
        match f {
            From::Table(t) => {
                self.table = *t;
                name_of(*t).0.into()
            }
            From::Tumble(t, size, offset) => {
                self.table = *t;
                let offset = offset
                    .as_ref()
                    .map(|o| format!(", {}", self.interval(o)))
                    .unwrap_or_default();
                format!(
                    "TABLE(TUMBLE(TABLE {}, DESCRIPTOR({}), {}{offset}))",
                    name_of(*t).0,
                    time_column(*t),
                    self.interval(size)
                )
            }
            From::Hop(t, slide, size) => {
                self.table = *t;
                format!(
                    "TABLE(HOP(TABLE {}, DESCRIPTOR({}), {}, {}))",
                    name_of(*t).0,
                    time_column(*t),
                    self.interval(slide),
                    self.interval(size)
                )
            }
            From::Session(t, gap, partition) => {
                self.table = *t;
                let by = if *partition {
                    format!(" PARTITION BY {}", column(*t, 0))
                } else {
                    String::new()
                };
                format!(
                    "TABLE(SESSION(TABLE {}{by}, DESCRIPTOR({}), {}))",
                    name_of(*t).0,
                    time_column(*t),
                    self.interval(gap)
                )
            }
            From::Join(a, b, kind, on) => {
                self.table = *a;
                let kind = match kind {
                    JoinKind::Inner => "JOIN",
                    JoinKind::Left => "LEFT JOIN",
                    JoinKind::Right => "RIGHT JOIN",
                    JoinKind::Full => "FULL JOIN",
                    JoinKind::Cross => "CROSS JOIN",
                };
                let on = match (kind, on) {
                    ("CROSS JOIN", _) => String::new(),
                    (_, Some(e)) => format!(" ON {}", self.expr(e)),
                    (_, None) => format!(" ON x.{} = y.{}", column(*a, 0), column(*b, 0)),
                };
                format!("{} x {kind} {} y{on}", name_of(*a).0, name_of(*b).0)
            }
            From::IntervalJoin(a, b, bound) => {
                self.table = *a;
                format!(
                    "{} x JOIN {} y ON x.{} = y.{} AND x.{} BETWEEN y.{} - {} AND y.{}",
                    name_of(*a).0,
                    name_of(*b).0,
                    column(*a, 0),
                    column(*b, 0),
                    time_column(*a),
                    time_column(*b),
                    self.interval(bound),
                    time_column(*b)
                )
            }
            From::Subquery(q) => format!("({}) AS sub", self.query(q)),
            From::Values(rows) => {
                let rows: Vec<String> = rows
                    .iter()
                    .take(4)
                    .map(|r| {
                        let cells: Vec<String> = r.iter().take(3).map(|e| self.expr(e)).collect();
                        format!(
                            "({})",
                            if cells.is_empty() {
                                "1".into()
                            } else {
                                cells.join(", ")
                            }
                        )
                    })
                    .collect();
                format!(
                    "(VALUES {}) AS v",
                    if rows.is_empty() {
                        "(1)".into()
                    } else {
                        rows.join(", ")
                    }
                )
            }
        }
    }

    fn query(&mut self, q: &Query) -> String {
        if self.depth > 6 {
            return "SELECT 1".into();
        }
        self.depth += 1;
        let from = self.from(&q.from);
        let items: Vec<String> = q.items.iter().take(5).map(|e| self.expr(e)).collect();
        let mut s = format!(
            "SELECT {}{} FROM {from}",
            if q.distinct { "DISTINCT " } else { "" },
            if items.is_empty() {
                "*".into()
            } else {
                items.join(", ")
            }
        );
        if let Some(f) = &q.filter {
            s.push_str(&format!(" WHERE {}", self.expr(f)));
        }
        match &q.group {
            Group::None => {}
            Group::Window(keys) => {
                let keys: Vec<String> = keys.iter().take(3).map(|e| self.expr(e)).collect();
                s.push_str(" GROUP BY window_start, window_end");
                for k in keys {
                    s.push_str(&format!(", {k}"));
                }
            }
            Group::Keys(keys) => {
                let keys: Vec<String> = keys.iter().take(3).map(|e| self.expr(e)).collect();
                if !keys.is_empty() {
                    s.push_str(&format!(" GROUP BY {}", keys.join(", ")));
                }
            }
            Group::Sets(sets) => {
                let sets: Vec<String> = sets
                    .iter()
                    .take(4)
                    .map(|set| {
                        let cols: Vec<&str> =
                            set.iter().take(3).map(|c| column(self.table, *c)).collect();
                        format!("({})", cols.join(", "))
                    })
                    .collect();
                s.push_str(&format!(
                    " GROUP BY window_start, window_end, GROUPING SETS ({})",
                    if sets.is_empty() {
                        "()".into()
                    } else {
                        sets.join(", ")
                    }
                ));
            }
            Group::Rollup(cols) | Group::Cube(cols) => {
                let word = if matches!(q.group, Group::Rollup(_)) {
                    "ROLLUP"
                } else {
                    "CUBE"
                };
                let cols: Vec<&str> = cols
                    .iter()
                    .take(4)
                    .map(|c| column(self.table, *c))
                    .collect();
                s.push_str(&format!(
                    " GROUP BY window_start, window_end, {word}({})",
                    if cols.is_empty() {
                        column(self.table, 0).to_string()
                    } else {
                        cols.join(", ")
                    }
                ));
            }
            Group::Legacy(kind, size) => {
                let f = ["TUMBLE", "HOP", "SESSION"][*kind as usize % 3];
                let args = if f == "HOP" {
                    format!("{}, {}", self.interval(size), self.interval(size))
                } else {
                    self.interval(size)
                };
                s.push_str(&format!(
                    " GROUP BY {f}({}, {args})",
                    time_column(self.table)
                ));
            }
        }
        if let Some(h) = &q.having {
            s.push_str(&format!(" HAVING {}", self.expr(h)));
        }
        if let Some((e, desc)) = &q.order {
            s.push_str(&format!(
                " ORDER BY {}{}",
                self.expr(e),
                if *desc { " DESC" } else { "" }
            ));
        }
        if let Some(l) = q.limit {
            s.push_str(&format!(" LIMIT {l}"));
        }
        self.depth -= 1;
        s
    }

    fn option_value(&self, v: &OptionValue) -> String {
        match v {
            OptionValue::Number(n) => n.to_string(),
            OptionValue::Text(t) => t.replace('\'', "''"),
            OptionValue::Duration(n, unit) => {
                format!(
                    "{n}{}",
                    ["ms", "s", " s", "min", "h", "d", "", "x"][*unit as usize % 8]
                )
            }
            OptionValue::Bool(b) => b.to_string(),
            OptionValue::Format(f) => {
                ["json", "csv", "raw", "avro", "debezium-json", "JSON", ""][*f as usize % 7].into()
            }
        }
    }

    fn create_table(&mut self, t: &CreateTable) -> String {
        let mut columns: Vec<String> = Vec::new();
        for (i, (name, ty, computed)) in t.columns.iter().take(6).enumerate() {
            let name = format!("c{}", name % 8);
            match computed {
                Some(e) if i > 0 => {
                    self.table = 0;
                    columns.push(format!("{name}_{i} AS {}", self.expr(e)));
                }
                _ => columns.push(format!("{name}_{i} {}", sql_type(*ty))),
            }
        }
        if columns.is_empty() {
            columns.push("ts TIMESTAMP(3)".into());
        }
        if let Some((c, delay)) = &t.watermark {
            columns.push(format!(
                "WATERMARK FOR c{}_0 AS c{}_0 - {}",
                c % 8,
                c % 8,
                self.interval(delay)
            ));
        }
        let mut options: Vec<String> = Vec::new();
        match &t.connector {
            Connector::None => {}
            Connector::Other(name) => {
                options.push(format!("'connector' = '{}'", name.replace('\'', "''")))
            }
            other => options.push(format!(
                "'connector' = '{}'",
                match other {
                    Connector::Datagen => "datagen",
                    Connector::Nexmark => "nexmark",
                    Connector::Memory => "memory",
                    Connector::Filesystem => "filesystem",
                    Connector::Kafka => "kafka",
                    Connector::Blackhole => "blackhole",
                    _ => "print",
                }
            )),
        }
        for (k, v) in t.options.iter().take(8) {
            let key = match k {
                OptionKey::Known(i) => OPTION_KEYS[*i as usize % OPTION_KEYS.len()].to_string(),
                OptionKey::Other(s) => s.replace('\'', "''"),
            };
            options.push(format!("'{key}' = '{}'", self.option_value(v)));
        }
        let with = if options.is_empty() {
            String::new()
        } else {
            format!(" WITH ({})", options.join(", "))
        };
        format!(
            "CREATE TABLE fz_{} ({}){with}",
            t.name % 16,
            columns.join(", ")
        )
    }
}

fn time_column(table: u8) -> &'static str {
    match name_of(table).0 {
        "bid" => "date_time",
        _ => "ts",
    }
}

fn sql_type(t: SqlType) -> String {
    match t {
        SqlType::Int => "INT".into(),
        SqlType::BigInt => "BIGINT".into(),
        SqlType::Double => "DOUBLE".into(),
        SqlType::Decimal(p, s) => format!("DECIMAL({}, {})", p % 40, s % 40),
        SqlType::Varchar => "VARCHAR".into(),
        SqlType::Boolean => "BOOLEAN".into(),
        SqlType::Date => "DATE".into(),
        SqlType::Time => "TIME".into(),
        SqlType::Timestamp(p) => format!("TIMESTAMP({})", p % 12),
        SqlType::TimestampTz => "TIMESTAMP WITH TIME ZONE".into(),
        SqlType::TimestampLtz => "TIMESTAMP_LTZ(3)".into(),
        SqlType::Interval => "INTERVAL".into(),
        SqlType::Bytea => "BYTEA".into(),
    }
}

fn chain(op: ChainOp, n: u16, leaf: &Leaf) -> String {
    let render = Render { table: 0, depth: 0 };
    let term = match op {
        ChainOp::Or | ChainOp::And | ChainOp::Not => "k = 1".to_string(),
        _ => render.leaf(leaf),
    };
    let n = n as usize;
    match op {
        ChainOp::Plus => format!("SELECT {}", vec![term; n.max(1)].join(" + ")),
        ChainOp::Or => format!(
            "SELECT * FROM gen WHERE {}",
            vec![term; n.max(1)].join(" OR ")
        ),
        ChainOp::And => format!(
            "SELECT * FROM gen WHERE {}",
            vec![term; n.max(1)].join(" AND ")
        ),
        ChainOp::Concat => format!("SELECT {}", vec![term; n.max(1)].join(" || ")),
        ChainOp::Cast => format!("SELECT 1{}", "::BIGINT".repeat(n)),
        ChainOp::Union => vec!["SELECT 1"; n.max(1)].join(" UNION ALL "),
        ChainOp::Join => {
            // Around the limit of tables per statement; planned deep, run empty.
            let tables: Vec<String> = (0..n % 600 + 1).map(|i| format!("mem m{i}")).collect();
            format!("SELECT 1 FROM {} WHERE false", tables.join(", "))
        }
        ChainOp::Not => format!("SELECT {}{term}", "NOT ".repeat(n)),
    }
}

/// The statements of `sqllogictest/*.slt`.
fn slt_statements() -> Vec<String> {
    let mut out = Vec::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sqllogictest");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line.starts_with("statement ") || line.starts_with("query ") {
                current = Some(String::new());
                continue;
            }
            if let Some(sql) = current.as_mut() {
                if line.trim().is_empty() || line.starts_with("----") {
                    if !sql.trim().is_empty() {
                        out.push(sql.trim().to_string());
                    }
                    current = None;
                } else {
                    sql.push_str(line);
                    sql.push('\n');
                }
            }
        }
        if let Some(sql) = current.filter(|s| !s.trim().is_empty()) {
            out.push(sql.trim().to_string());
        }
    }
    out
}

/// A char boundary of `s` at or before `at % (len + 1)`.
fn boundary(s: &str, at: u16) -> usize {
    let mut i = at as usize % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(mut sql: String, mutations: &[Mutation]) -> String {
    for m in mutations.iter().take(6) {
        match m {
            Mutation::Delete(at, n) => {
                let from = boundary(&sql, *at);
                let to = boundary(&sql, (from + *n as usize % 16) as u16);
                if to > from {
                    sql.replace_range(from..to, "");
                }
            }
            Mutation::Insert(at, token) => {
                let at = boundary(&sql, *at);
                sql.insert_str(at, TOKENS[*token as usize % TOKENS.len()]);
            }
            Mutation::Duplicate(at, n) => {
                let from = boundary(&sql, *at);
                let to = boundary(&sql, (from + *n as usize % 32) as u16);
                if to > from {
                    let piece = sql[from..to].to_string();
                    sql.insert_str(to, &piece);
                }
            }
            Mutation::Truncate(at) => {
                let at = boundary(&sql, *at);
                sql.truncate(at);
            }
            Mutation::ReplaceNumber(at, n) => {
                let at = boundary(&sql, *at);
                if let Some(pos) = sql[at..].find(|c: char| c.is_ascii_digit()) {
                    let start = at + pos;
                    let end = sql[start..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(sql.len(), |e| start + e);
                    let extreme =
                        ["0", "-1", "9223372036854775807", "99999999999999999999"][*n as usize % 4];
                    sql.replace_range(start..end, extreme);
                }
            }
        }
    }
    sql
}

/// The session every input runs in: bounded tables of every kind.
async fn setup(dir: &std::path::Path) -> SabotContext {
    let ctx = SabotContext::new(SabotConfig {
        parallelism: 2,
        checkpoint_interval: None,
        ..SabotConfig::default()
    });
    let files = dir.join("files");
    std::fs::create_dir_all(&files).expect("dir");
    std::fs::write(
        files.join("a.json"),
        "{\"k\": 1, \"v\": 10, \"ts\": \"2024-01-01 00:00:01\"}\n\
         {\"k\": 2, \"v\": 20, \"ts\": \"2024-01-01 00:00:07\"}\n\
         {\"k\": 1, \"v\": 30, \"ts\": \"2024-01-01 00:00:12\"}\n",
    )
    .expect("file");
    for sql in [
        "CREATE TABLE gen (k BIGINT, v BIGINT, price DOUBLE, s VARCHAR, ts TIMESTAMP(3), \
         WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'datagen', \
         'number-of-rows' = '40', 'fields.k.min' = '1', 'fields.k.max' = '5')"
            .to_string(),
        "CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3), \
         WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND) WITH ('connector' = \
         'nexmark', 'nexmark.table.type' = 'bid', 'events.num' = '200', 'throttle' = 'false', \
         'base-time' = '2024-01-01 00:00:00')"
            .to_string(),
        "CREATE TABLE mem (k BIGINT, v BIGINT, s VARCHAR, ts TIMESTAMP(3), \
         WATERMARK FOR ts AS ts)"
            .to_string(),
        "INSERT INTO mem VALUES (1, 10, 'a', TIMESTAMP '2024-01-01 00:00:01'), \
         (2, NULL, 'é', TIMESTAMP '2024-01-01 00:00:05'), \
         (1, 30, NULL, TIMESTAMP '2024-01-01 00:00:11')"
            .to_string(),
        "CREATE TABLE sink (k BIGINT) WITH ('connector' = 'blackhole')".to_string(),
        format!(
            "CREATE TABLE files (k BIGINT, v BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) \
             WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json')",
            files.display()
        ),
    ] {
        ctx.sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    ctx
}

/// Runs one statement as `sabot run` would: plan it, then execute what it returns, a bounded
/// plan to the end (within `limit`), an unbounded one for a moment.
async fn run_statement(ctx: &SabotContext, sql: &str, limit: Duration) -> Result<Outcome, String> {
    let df = match ctx.sql(sql).await {
        Ok(df) => df,
        Err(e) => return error_outcome(&e, sql),
    };
    let plan = match df.clone().create_physical_plan().await {
        Ok(plan) => plan,
        Err(e) => return error_outcome(&e, sql),
    };
    let bounded = !plan.boundedness().is_unbounded();
    let task_ctx = ctx.task_ctx();
    // An updating query is read as its changelog, as every client reads it.
    let opened = if sabot::physical::sink::is_updating_result(&plan) {
        sabot::physical::streaming::changelog_stream(&plan, task_ctx)
    } else {
        datafusion::physical_plan::execute_stream(plan, task_ctx)
    };
    let mut stream = match opened {
        Ok(s) => s,
        Err(e) => return error_outcome(&e, sql),
    };
    let drain = async {
        while let Some(batch) = stream.next().await {
            batch?;
        }
        Ok::<(), datafusion::error::DataFusionError>(())
    };
    if bounded {
        match tokio::time::timeout(limit, drain).await {
            Ok(Ok(())) => Ok("ok".into()),
            Ok(Err(e)) => error_outcome(&e, sql),
            Err(_) => Err(format!(
                "a bounded statement ran for more than {limit:?}: {}",
                shorten(sql)
            )),
        }
    } else {
        match tokio::time::timeout(Duration::from_millis(150), drain).await {
            Ok(Ok(())) => Ok("ok".into()),
            Ok(Err(e)) => error_outcome(&e, sql),
            Err(_) => Ok("unbounded".into()),
        }
    }
}

fn shorten(sql: &str) -> String {
    let mut end = sql.len().min(300);
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}{}",
        &sql[..end],
        if end < sql.len() { "..." } else { "" }
    )
}

/// An error is a fine answer if it says something; its class is its SQLSTATE.
fn error_outcome(e: &datafusion::error::DataFusionError, sql: &str) -> Result<Outcome, String> {
    let message = e.to_string();
    if message.trim().is_empty() {
        return Err(format!("an error without a message for {}", shorten(sql)));
    }
    let code = sabot::server::errors::sqlstate(e);
    if std::env::var_os("SABOT_FUZZ_VERBOSE").is_some() {
        eprintln!("{code}: {}\n  <- {}", shorten(&message), shorten(sql));
    }
    Ok(format!("error {code}"))
}

/// The SQL of one input.
fn render_case(case: &Case, statements: &[String]) -> String {
    let mut r = Render { table: 0, depth: 0 };
    match case {
        Case::Query(q) => r.query(q),
        Case::Explain(q) => format!("EXPLAIN {}", r.query(q)),
        Case::Insert(q) => format!("INSERT INTO sink {}", r.query(q)),
        Case::CreateTable(t) => r.create_table(t),
        Case::Set(s) => match s {
            Setting::Known(k, v) => format!(
                "SET '{}' = '{}'",
                SETTINGS[*k as usize % SETTINGS.len()],
                r.option_value(v)
            ),
            Setting::Postgres(k, v) => format!(
                "SET {} = '{}'",
                POSTGRES[*k as usize % POSTGRES.len()],
                r.option_value(v)
            ),
            Setting::Other(k, v) => format!("SET {k} = {v}"),
        },
        Case::Chain(op, n, leaf) => chain(*op, *n % 30_000, leaf),
        Case::Mutated(i, mutations) => {
            let base = statements
                .get(*i as usize % statements.len().max(1))
                .cloned()
                .unwrap_or_default();
            mutate(base, mutations)
        }
        Case::Misc(m) => match m {
            Misc::Show(i) => {
                ["SHOW TABLES", "SHOW parallelism", "SHOW ALL", "SHOW é"][*i as usize % 4].into()
            }
            Misc::Describe(t) => format!("DESCRIBE {}", name_of(*t).0),
            Misc::DropTable(t) => format!("DROP TABLE IF EXISTS fz_{}", t % 16),
            Misc::Text(t) => t.clone(),
        },
    }
}

/// The SQL target (see the module docs).
#[test]
fn fuzz_target_sql() {
    let rt = harness::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = rt.block_on(setup(dir.path()));
    let statements = slt_statements();
    assert!(statements.len() > 100, "the .slt statements were not found");
    let scratch = dir.path().join("scratch").display().to_string();
    harness::run("sql", 2_048, |data| {
        let mut u = Unstructured::new(data);
        let Ok(case) = Case::arbitrary(&mut u) else {
            return Ok("no input".into());
        };
        let sql = render_case(&case, &statements).replace("$__TEST_DIR__", &scratch);
        // The fixed tables stay (a mutated statement could drop one).
        if sql.to_ascii_uppercase().contains("DROP") && !sql.contains("fz_") {
            return Ok("skipped: drop".into());
        }
        // Settings that would make later inputs slow or unbounded are undone right after.
        let outcome = rt.block_on(run_statement(&ctx, &sql, Duration::from_secs(20)));
        if matches!(case, Case::Set(_)) {
            rt.block_on(async {
                for reset in [
                    "SET 'parallelism' = '2'",
                    "SET 'batch-size' = '8192'",
                    "SET 'table.dml-sync' = 'false'",
                    "SET 'state.backend' = 'memory'",
                    "SET 'datafusion.sql_parser.dialect' = 'generic'",
                ] {
                    let _ = ctx.sql(reset).await;
                }
            });
        }
        outcome
    });
}
