//! Each session's values of PostgreSQL's own parameters
//! ([`crate::statement::postgres`] lists them, with their defaults and the values they accept).
//! A value Sabot cannot honour is refused with a clear error instead of answering in a form the
//! client did not ask for.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::statement::postgres::parameter;

/// The PostgreSQL parameters of one session.
#[derive(Debug, Default)]
pub(super) struct PostgresSettings {
    set: Mutex<BTreeMap<&'static str, String>>,
}

impl PostgresSettings {
    /// The current value of `name`, if it is a known parameter.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        let p = parameter(name)?;
        let set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        Some(set.get(p.name).cloned().unwrap_or_else(|| p.default.into()))
    }

    /// Every parameter back to its default (`DISCARD ALL`).
    pub(super) fn reset_all(&self) {
        self.set.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Sets `name` to `value` (`None`: back to its default); an error says what the parameter
    /// accepts.
    pub(super) fn set(&self, name: &str, value: Option<&str>) -> Result<(), String> {
        let p = parameter(name).ok_or_else(|| format!("unknown parameter {name}"))?;
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        match value {
            None => {
                set.remove(p.name);
            }
            Some(v) => {
                if let Some(accepts) = p.accepts
                    && !accepts(v)
                {
                    return Err(format!(
                        "cannot set {} to '{v}': {}; keep '{}'",
                        p.name, p.requirement, p.default
                    ));
                }
                set.insert(p.name, v.to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sabot_cannot_honour_are_refused() {
        let s = PostgresSettings::default();
        assert_eq!(s.get("TimeZone").as_deref(), Some("UTC"));
        s.set("extra_float_digits", Some("3")).unwrap();
        assert_eq!(s.get("extra_float_digits").as_deref(), Some("3"));
        s.set("extra_float_digits", None).unwrap();
        assert_eq!(s.get("extra_float_digits").as_deref(), Some("1"));
        let e = s.set("timezone", Some("Europe/Paris")).unwrap_err();
        assert!(e.contains("UTC only"), "{e}");
        assert!(s.set("client_encoding", Some("LATIN1")).is_err());
        assert!(s.set("names", Some("utf8")).is_ok());
        assert!(s.set("extra_float_digits", Some("many")).is_err());
        assert_eq!(s.get("time zone").as_deref(), Some("UTC"));
    }
}
