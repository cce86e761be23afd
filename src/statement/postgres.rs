//! PostgreSQL's own session parameters (`SET extra_float_digits = 3`, `SHOW DateStyle`), which
//! drivers set when they connect: which ones Sabot knows, their defaults and the values it
//! accepts, and reading a `SET` / `RESET` of one. Those Sabot cannot honour with another value
//! (the text encoding, the date style, the time zone: rows are always UTF-8, ISO and UTC) accept
//! only the value they have. The server keeps each session's values.

/// A parameter, its default, and the values it accepts (`None`: any).
pub struct Parameter {
    /// Its name, in lower case.
    pub name: &'static str,
    /// Its value until a session sets it.
    pub default: &'static str,
    /// The values it accepts (`None`: any).
    pub accepts: Option<fn(&str) -> bool>,
    /// What it accepts, for the error refusing another value.
    pub requirement: &'static str,
}

fn utf8(v: &str) -> bool {
    matches!(
        v.to_ascii_uppercase().as_str(),
        "UTF8" | "UTF-8" | "UNICODE"
    )
}

fn iso(v: &str) -> bool {
    v.to_ascii_uppercase()
        .split(',')
        .next()
        .is_some_and(|style| style.trim() == "ISO")
}

fn utc(v: &str) -> bool {
    matches!(
        v.to_ascii_uppercase().as_str(),
        "UTC" | "GMT" | "ETC/UTC" | "ETC/GMT" | "Z" | "ZULU" | "UCT" | "0" | "+00" | "+00:00"
    )
}

fn postgres_intervals(v: &str) -> bool {
    v.eq_ignore_ascii_case("postgres")
}

const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "application_name",
        default: "",
        accepts: None,
        requirement: "",
    },
    Parameter {
        name: "client_encoding",
        default: "UTF8",
        accepts: Some(utf8),
        requirement: "Sabot sends and reads UTF8 only",
    },
    Parameter {
        name: "client_min_messages",
        default: "notice",
        accepts: None,
        requirement: "",
    },
    Parameter {
        name: "datestyle",
        default: "ISO, MDY",
        accepts: Some(iso),
        requirement: "Sabot prints dates and times in the ISO style only",
    },
    Parameter {
        name: "extra_float_digits",
        default: "1",
        accepts: Some(|v| {
            v.trim()
                .parse::<i32>()
                .is_ok_and(|n| (-15..=3).contains(&n))
        }),
        requirement: "extra_float_digits is an integer from -15 to 3",
    },
    Parameter {
        name: "intervalstyle",
        default: "postgres",
        accepts: Some(postgres_intervals),
        requirement: "Sabot prints intervals in the postgres style only",
    },
    Parameter {
        name: "lc_messages",
        default: "C",
        accepts: None,
        requirement: "",
    },
    Parameter {
        name: "lock_timeout",
        default: "0",
        accepts: None,
        requirement: "",
    },
    Parameter {
        name: "search_path",
        default: "public",
        accepts: None,
        requirement: "",
    },
    Parameter {
        name: "server_encoding",
        default: "UTF8",
        accepts: Some(|_| false),
        requirement: "server_encoding cannot be changed",
    },
    Parameter {
        name: "server_version",
        default: "16.6 (Sabot)",
        accepts: Some(|_| false),
        requirement: "server_version cannot be changed",
    },
    Parameter {
        name: "standard_conforming_strings",
        default: "on",
        accepts: Some(|v| v.eq_ignore_ascii_case("on") || v.eq_ignore_ascii_case("true")),
        requirement: "Sabot reads strings in the standard way only",
    },
    Parameter {
        name: "statement_timeout",
        default: "0",
        accepts: None,
        requirement: "",
    },
    Parameter {
        name: "timezone",
        default: "UTC",
        accepts: Some(utc),
        requirement: "Sabot prints times in UTC only",
    },
    Parameter {
        name: "transaction_isolation",
        default: "read committed",
        accepts: None,
        requirement: "",
    },
];

/// The parameter `name` (any case; `time zone`, `transaction isolation level` and `names` are
/// spellings of `timezone`, `transaction_isolation` and `client_encoding`).
pub fn parameter(name: &str) -> Option<&'static Parameter> {
    let name = name.to_ascii_lowercase();
    let name = match name.as_str() {
        "time zone" => "timezone",
        "transaction isolation level" => "transaction_isolation",
        "names" => "client_encoding",
        other => other,
    }
    .to_string();
    PARAMETERS.iter().find(|p| p.name == name)
}

/// Whether `name` is one of PostgreSQL's parameters known here.
fn is_parameter(name: &str) -> bool {
    parameter(name).is_some()
}

/// `SET [SESSION | LOCAL] name {= | TO} value`, `SET TIME ZONE value`, `SET NAMES value`,
/// `RESET name`, for PostgreSQL's parameters: the parameter and its new value (`None`: reset).
/// Flink's `SET 'key' = 'value'` (a quoted key) is not one of these.
pub fn parse_set(sql: &str) -> Option<(String, Option<String>)> {
    let text = sql.trim().trim_end_matches(';').trim();
    let (verb, rest) = text.split_once(char::is_whitespace)?;
    let rest = rest.trim();
    if verb.eq_ignore_ascii_case("reset") {
        return is_parameter(rest).then(|| (rest.to_ascii_lowercase(), None));
    }
    if !verb.eq_ignore_ascii_case("set") {
        return None;
    }
    let mut rest = rest;
    for scope in ["session ", "local "] {
        if let Some(after) = strip_prefix_ignore_case(rest, scope) {
            rest = after.trim_start();
        }
    }
    let (name, value) = if let Some(zone) = strip_prefix_ignore_case(rest, "time zone") {
        ("timezone", zone.trim())
    } else {
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let (name, value) = rest.split_at(end);
        let value = value.trim_start();
        let value = value
            .strip_prefix('=')
            .or_else(|| strip_prefix_ignore_case(value, "to "))
            .or_else(|| name.eq_ignore_ascii_case("names").then_some(value))?;
        (name, value.trim())
    };
    if !is_parameter(name) {
        return None;
    }
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    if value.eq_ignore_ascii_case("default") {
        return Some((name.to_ascii_lowercase(), None));
    }
    Some((name.to_ascii_lowercase(), Some(value.to_string())))
}

/// `text` after `prefix` (ASCII, compared ignoring case), if it starts with it. Compares
/// bytes, so a multi-byte character where the prefix ends is a mismatch, never a slice inside
/// a character.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_settings_parse() {
        assert_eq!(
            parse_set("SET extra_float_digits = 3"),
            Some(("extra_float_digits".into(), Some("3".into())))
        );
        assert_eq!(
            parse_set("SET application_name = 'PostgreSQL JDBC Driver'"),
            Some((
                "application_name".into(),
                Some("PostgreSQL JDBC Driver".into())
            ))
        );
        assert_eq!(
            parse_set("set session DateStyle to 'ISO, MDY';"),
            Some(("datestyle".into(), Some("ISO, MDY".into())))
        );
        assert_eq!(
            parse_set("SET TIME ZONE 'UTC'"),
            Some(("timezone".into(), Some("UTC".into())))
        );
        assert_eq!(
            parse_set("SET NAMES 'UTF8'"),
            Some(("names".into(), Some("UTF8".into())))
        );
        assert_eq!(
            parse_set("RESET search_path"),
            Some(("search_path".into(), None))
        );
        assert_eq!(parse_set("SET 'parallelism' = '2'"), None);
        assert_eq!(parse_set("SET parallelism = 2"), None);
        assert_eq!(parse_set("SELECT 1"), None);
    }

    /// `SET sessioné = 1` panicked: the scope prefix `session ` was cut out of the text by
    /// byte count, inside the two-byte `é`.
    #[test]
    fn multibyte_names_are_not_cut_inside_a_character() {
        assert_eq!(parse_set("SET sessioné = 1"), None);
        assert_eq!(parse_set("SET localé = 1"), None);
        assert_eq!(parse_set("SET time zoné 'UTC'"), None);
        assert_eq!(parse_set("SET application_name tó 'x'"), None);
        assert_eq!(parse_set("SET é"), None);
        assert_eq!(
            parse_set("SET application_name = 'é'"),
            Some(("application_name".into(), Some("é".into())))
        );
        assert_eq!(
            parse_set("SET SESSION TIME ZONE 'UTC'"),
            Some(("timezone".into(), Some("UTC".into())))
        );
    }
}
