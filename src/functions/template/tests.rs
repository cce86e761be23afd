//! Both template languages against what PostgreSQL and Flink print.

use super::*;

fn at(text: &str) -> Value {
    Value::DateTime {
        at: NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap(),
        zoned: false,
    }
}

fn pg(template: &str, value: &str) -> String {
    let mut out = String::new();
    Template::postgres(template)
        .unwrap()
        .format(at(value), &mut out)
        .unwrap();
    out
}

fn java(pattern: &str, value: &str) -> String {
    let mut out = String::new();
    Template::java(pattern)
        .unwrap()
        .format(at(value), &mut out)
        .unwrap();
    out
}

/// `to_char(ts, 'YYYY-MM-DD')` returned the template itself: DataFusion's to_char reads
/// chrono's `%` patterns only.
#[test]
fn postgres_templates_as_postgres_prints_them() {
    // Expected values as PostgreSQL 16 prints them.
    let t = "2024-03-05 14:07:09.123456";
    assert_eq!(pg("YYYY-MM-DD", t), "2024-03-05");
    assert_eq!(pg("YYYY-MM-DD HH24:MI:SS", t), "2024-03-05 14:07:09");
    assert_eq!(pg("HH12:MI AM", t), "02:07 PM");
    assert_eq!(pg("hh:mi:ss.ms p.m.", t), "02:07:09.123 p.m.");
    assert_eq!(pg("US", t), "123456");
    assert_eq!(pg("Month DD, YYYY", t), "March     05, 2024");
    assert_eq!(pg("FMMonth FMDDth, YYYY", t), "March 5th, 2024");
    assert_eq!(pg("Day Dy DY day", t), "Tuesday   Tue TUE tuesday  ");
    assert_eq!(pg("MON mon Mon", t), "MAR mar Mar");
    assert_eq!(pg("DDD D ID IW WW W Q CC", t), "065 3 2 10 10 1 1 21");
    assert_eq!(pg("J", "2000-01-01 00:00:00"), "2451545");
    assert_eq!(pg("Y,YYY YYY YY Y", t), "2,024 024 24 4");
    assert_eq!(pg("\"Year\" YYYY \\\"", t), "Year 2024 \"");
    assert_eq!(pg("SSSS RM", t), "50829 III ");
    assert_eq!(pg("FMRM", t), "III");
    assert_eq!(pg("IYYY-IW-ID", "2021-01-01 00:00:00"), "2020-53-5");
    assert_eq!(pg("DDth ddTH", "2024-03-22 00:00:00"), "22nd 22ND");
    assert_eq!(pg("yyyy/mm/dd", t), "2024/03/05");
    assert_eq!(pg("TZ OF", t), " +00");
}

#[test]
fn java_patterns_as_flink_prints_them() {
    let t = "2024-03-05 14:07:09.123456";
    assert_eq!(java("yyyy-MM-dd", t), "2024-03-05");
    assert_eq!(
        java("yyyy-MM-dd HH:mm:ss.SSS", t),
        "2024-03-05 14:07:09.123"
    );
    assert_eq!(java("yy/M/d h:mm a", t), "24/3/5 2:07 PM");
    assert_eq!(java("EEE, d MMM yyyy", t), "Tue, 5 Mar 2024");
    assert_eq!(java("EEEE MMMM", t), "Tuesday March");
    assert_eq!(java("'at' HH 'o''clock'", t), "at 14 o'clock");
    assert_eq!(java("D u k K", t), "65 2 14 2");
    // US weeks: 2024-03-05 is in week 10; Dec 29 2024 (a Sunday) is week 1 of 2025.
    assert_eq!(java("w", t), "10");
    assert_eq!(java("Y-w", "2024-12-29 00:00:00"), "2025-1");
    assert_eq!(java("XXX Z", t), "+00:00 +0000");
}

#[test]
fn what_cannot_be_honoured_is_an_error() {
    let e = Template::java("yyyy-MM-dd q").unwrap_err();
    assert!(e.contains("'q'"), "{e}");
    assert!(Template::java("yyyy 'open").is_err());
    let time = Value::Time(
        NaiveDateTime::parse_from_str("1970-01-01 10:00:00", "%Y-%m-%d %H:%M:%S").unwrap(),
    );
    let mut out = String::new();
    assert!(
        Template::postgres("YYYY")
            .unwrap()
            .format(time, &mut out)
            .is_err()
    );
    let mut out = String::new();
    Template::postgres("HH24:MI:SS")
        .unwrap()
        .format(
            Value::Duration {
                nanos: 54_132_000_000_000,
            },
            &mut out,
        )
        .unwrap();
    assert_eq!(out, "15:02:12");
    assert!(
        Template::postgres("DD")
            .unwrap()
            .format(Value::Duration { nanos: 1 }, &mut String::new())
            .is_err()
    );
}

#[test]
fn templates_with_multibyte_text() {
    assert_eq!(pg("YYYY年MM月", "2024-03-05 00:00:00"), "2024年03月");
    assert_eq!(java("yyyy'年'", "2024-03-05 00:00:00"), "2024年");
    assert_eq!(pg("é\"", "2024-03-05 00:00:00"), "é");
}
