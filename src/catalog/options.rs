//! `TableOptions`: the `WITH ('key' = 'value', ...)` map, validated and typed.
//!
//! Each connector declares the keys it accepts as [`OptionSpec`]s. [`TableOptions::validate`]
//! rejects unknown keys (suggesting the closest valid key) and missing required keys; the typed
//! getters reject values of the wrong type, always naming the key, the value and the expected
//! form, so that a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::common::{plan_datafusion_err, plan_err};
use datafusion::error::Result;

use crate::config::parse_duration;

/// One accepted option key.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The key; a trailing `*` accepts any suffix (e.g. `properties.*`), and a `*` in the middle
    /// any single segment (e.g. `fields.*.kind`).
    pub key: &'static str,
    /// Must be present.
    pub required: bool,
    /// One-line description with the default, for error messages and docs.
    pub help: &'static str,
}

impl OptionSpec {
    /// An optional key.
    pub const fn optional(key: &'static str, help: &'static str) -> Self {
        Self {
            key,
            required: false,
            help,
        }
    }

    /// A required key.
    pub const fn required(key: &'static str, help: &'static str) -> Self {
        Self {
            key,
            required: true,
            help,
        }
    }

    fn matches(&self, key: &str) -> bool {
        // `prefix.*` accepts any longer key, dots included (`properties.bootstrap.servers`).
        if let Some(prefix) = self.key.strip_suffix('*')
            && !prefix.contains('*')
        {
            return key.len() > prefix.len() && key.starts_with(prefix);
        }
        // Otherwise `*` stands for exactly one segment (`fields.*.kind`).
        let pattern: Vec<&str> = self.key.split('.').collect();
        let parts: Vec<&str> = key.split('.').collect();
        pattern.len() == parts.len()
            && pattern
                .iter()
                .zip(&parts)
                .all(|(p, k)| (*p == "*" && !k.is_empty()) || p == k)
    }
}

/// Options every table with a source accepts.
pub const SOURCE_COMMON_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "scan.watermark.idle-timeout",
        "a split without data for this long stops holding back the watermark (default: never)",
    ),
    OptionSpec::optional(
        "scan.watermark.future-tolerance",
        "event times further than this ahead of the wall clock do not advance the watermark (default: 1 d)",
    ),
];

/// Edit distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The WITH options of one table (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableOptions {
    table: String,
    values: BTreeMap<String, String>,
}

impl TableOptions {
    /// Options of table `table`.
    pub fn new(table: impl Into<String>, values: BTreeMap<String, String>) -> Self {
        Self {
            table: table.into(),
            values,
        }
    }

    /// Options of table `t` from `pairs`, for tests.
    #[cfg(test)]
    pub(crate) fn of_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::new(
            "t",
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// All key/value pairs.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Checks every key against `specs` (see the module docs).
    pub fn validate(&self, connector: &str, specs: &[&[OptionSpec]]) -> Result<()> {
        let all: Vec<&OptionSpec> = specs.iter().flat_map(|s| s.iter()).collect();
        for key in self.values.keys() {
            if key == "connector" || all.iter().any(|s| s.matches(key)) {
                continue;
            }
            let suggestion = all
                .iter()
                .map(|s| (edit_distance(key, s.key), s.key))
                .filter(|(d, _)| *d <= 3)
                .min()
                .map(|(_, k)| format!(" Did you mean '{k}'?"))
                .unwrap_or_default();
            let valid: Vec<&str> = all.iter().map(|s| s.key).collect();
            return plan_err!(
                "unknown option '{key}' for connector '{connector}' (table {}).{suggestion} \
                 Valid options: {}",
                self.table,
                valid.join(", ")
            );
        }
        for spec in &all {
            if spec.required && !self.values.contains_key(spec.key) {
                return plan_err!(
                    "connector '{connector}' (table {}) needs the option '{}': {}",
                    self.table,
                    spec.key,
                    spec.help
                );
            }
        }
        Ok(())
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|s| s.as_str())
    }

    /// The value of a required key.
    pub fn required(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| plan_datafusion_err!("table {} needs the option '{key}'", self.table))
    }

    fn bad(&self, key: &str, value: &str, expected: &str) -> datafusion::error::DataFusionError {
        plan_datafusion_err!(
            "option '{key}' of table {} is '{value}', but it must be {expected}",
            self.table
        )
    }

    /// An unsigned integer option.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| self.bad(key, v, "a non-negative integer"))
            })
            .transpose()
    }

    /// A signed integer option.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| self.bad(key, v, "an integer"))
            })
            .transpose()
    }

    /// A floating point option.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| self.bad(key, v, "a number"))
            })
            .transpose()
    }

    /// A boolean option (`true` / `false`).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.bad(key, v, "'true' or 'false'")),
            })
            .transpose()
    }

    /// A duration option (`500ms`, `10 s`, `5 min`, ...).
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>> {
        self.get(key)
            .map(|v| {
                parse_duration(v).ok_or_else(|| {
                    self.bad(key, v, "a duration such as '500ms', '10 s' or '5 min'")
                })
            })
            .transpose()
    }

    /// One of `choices` (case-insensitive); returns the matching choice.
    pub fn get_choice(&self, key: &str, choices: &[&'static str]) -> Result<Option<&'static str>> {
        self.get(key)
            .map(|v| {
                choices
                    .iter()
                    .find(|c| c.eq_ignore_ascii_case(v.trim()))
                    .copied()
                    .ok_or_else(|| self.bad(key, v, &format!("one of: {}", choices.join(", "))))
            })
            .transpose()
    }

    /// The options whose keys start with `prefix`, without it: how Flink names the options
    /// of a key or value format (`value.json.ignore-parse-errors` is the value format's
    /// `json.ignore-parse-errors`).
    pub fn under(&self, prefix: &str) -> TableOptions {
        TableOptions {
            table: self.table.clone(),
            values: self
                .values
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
                .collect(),
        }
    }

    /// Name of the table these options belong to.
    pub fn table(&self) -> &str {
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> TableOptions {
        TableOptions::of_pairs(pairs)
    }

    const SPECS: &[OptionSpec] = &[
        OptionSpec::required("path", "file or directory"),
        OptionSpec::optional("format", "json or csv"),
        OptionSpec::optional("fields.*.kind", "sequence or random"),
        OptionSpec::optional("properties.*", "passed on"),
    ];

    #[test]
    fn unknown_key_names_it_and_suggests() {
        let err = opts(&[("path", "x"), ("fromat", "json")])
            .validate("filesystem", &[SPECS])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option 'fromat'"), "{err}");
        assert!(err.contains("Did you mean 'format'?"), "{err}");
        assert!(err.contains("Valid options: path, format"), "{err}");
    }

    #[test]
    fn missing_required_key() {
        let err = opts(&[("format", "json")])
            .validate("filesystem", &[SPECS])
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs the option 'path'"), "{err}");
    }

    #[test]
    fn wildcard_keys() {
        opts(&[
            ("path", "x"),
            ("fields.id.kind", "sequence"),
            ("properties.acks", "all"),
        ])
        .validate("x", &[SPECS])
        .unwrap();
        assert!(
            opts(&[("path", "x"), ("fields.kind", "sequence")])
                .validate("x", &[SPECS])
                .is_err()
        );
    }

    #[test]
    fn typed_values() {
        let o = opts(&[("n", "12"), ("b", "TRUE"), ("d", "10 s"), ("bad", "ten")]);
        assert_eq!(o.get_u64("n").unwrap(), Some(12));
        assert_eq!(o.get_bool("b").unwrap(), Some(true));
        assert_eq!(o.get_duration("d").unwrap(), Some(Duration::from_secs(10)));
        let err = o.get_u64("bad").unwrap_err().to_string();
        assert!(err.contains("'bad' of table t is 'ten'"), "{err}");
        assert_eq!(o.get_u64("missing").unwrap(), None);
    }
}
