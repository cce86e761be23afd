//! Date/time format templates: PostgreSQL's `to_char` patterns (`YYYY-MM-DD HH24:MI:SS`) and
//! Java's `SimpleDateFormat` patterns, which Flink's `DATE_FORMAT` takes (`yyyy-MM-dd HH:mm`).
//!
//! Both are compiled once into the same list of [`Piece`]s, then each value is written with
//! chrono's calendar (`Datelike`, `Timelike`). PostgreSQL copies text that is not a pattern;
//! Java reserves every ASCII letter, so a Java letter Sabot does not know is an error, never
//! copied. A template asking for a part the value does not have (a year of a TIME, a day of
//! an interval) is an error too, not a made-up 1970.
//!
//! - [`postgres`]: PostgreSQL's template patterns.
//! - [`java`]: Java's pattern letters.
//! - here: the compiled pieces, and writing a value with them.

mod java;
mod postgres;
#[cfg(test)]
mod tests;

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

/// Letter case of names (`MONTH`, `Month`, `month`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Upper,
    Capital,
    Lower,
}

/// A number a piece prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// The year; `Some(n)`: its last n digits.
    Year(Option<u32>),
    /// The ISO 8601 week-numbering year; `Some(n)`: its last n digits.
    IsoYear(Option<u32>),
    /// The year with a thousands comma (`2,024`).
    YearWithComma,
    Month,
    Day,
    DayOfYear,
    /// Day of the ISO week-numbering year (1-371).
    IsoDayOfYear,
    /// 1 (Sunday) to 7.
    WeekdayFromSunday,
    /// 1 (Monday) to 7.
    WeekdayFromMonday,
    /// PostgreSQL `W`: (day - 1) / 7 + 1.
    WeekOfMonth,
    /// PostgreSQL `WW`: (day of year - 1) / 7 + 1.
    WeekOfYear,
    IsoWeek,
    /// Java `W` (US weeks: Sunday first, week 1 holds the 1st).
    UsWeekOfMonth,
    /// Java `w` (US weeks: Sunday first, week 1 holds January 1st).
    UsWeekOfYear,
    /// Java `Y`: the year the US week belongs to.
    UsWeekYear,
    Quarter,
    Century,
    JulianDay,
    /// 0-23.
    Hour24,
    /// 1-12.
    Hour12,
    /// Java `k`: 1-24.
    Hour1To24,
    /// Java `K`: 0-11.
    Hour0To11,
    Minute,
    Second,
    SecondsOfDay,
    /// Java `S`: milliseconds as a number.
    Millis,
}

impl Number {
    /// Whether the number is a date part (a TIME or an interval has none).
    fn is_date(&self) -> bool {
        !matches!(
            self,
            Number::Hour24
                | Number::Hour12
                | Number::Hour1To24
                | Number::Hour0To11
                | Number::Minute
                | Number::Second
                | Number::SecondsOfDay
                | Number::Millis
        )
    }
}

/// A name a piece prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Month,
    MonthShort,
    /// Roman numeral month (`XII`).
    MonthRoman,
    Weekday,
    WeekdayShort,
    /// AM / PM; `true`: with dots (`A.M.`).
    Meridiem(bool),
    /// AD / BC; `true`: with dots.
    Era(bool),
}

/// One part of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A number, zero-padded to `width` digits; `ordinal`: followed by `st`/`nd`/... .
    Number {
        value: Number,
        width: usize,
        ordinal: Option<Case>,
    },
    /// A name; `pad`: blank-padded to the longest name of its kind (PostgreSQL without FM).
    Name {
        value: Name,
        case: Case,
        pad: bool,
    },
    /// Fractional seconds, `digits` digits.
    Fraction {
        digits: usize,
    },
    /// The zone: its name (`UTC`), or its offset (`+00`, `+00:00`, `+0000`, `Z`).
    Zone(ZoneStyle),
}

/// How a time zone is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneStyle {
    /// `UTC` (`utc` when lower); nothing for a value without a zone (PostgreSQL's TZ).
    Name(Case),
    /// `+00` (PostgreSQL OF, TZH).
    Hours,
    /// `00` (PostgreSQL TZM).
    Minutes,
    /// `+0000` (Java Z, XX).
    Compact,
    /// `+00:00` (Java XXX).
    Colon,
    /// `Z` for UTC (Java X).
    IsoZ,
}

/// A template, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// What a value to format holds.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// A date and time (a DATE at midnight), `zoned` if it is an instant (timestamptz).
    DateTime { at: NaiveDateTime, zoned: bool },
    /// A time of day.
    Time(NaiveDateTime),
    /// A duration: hours may exceed 23, there is no date.
    Duration { nanos: i128 },
}

impl Template {
    /// Whether the template asks for a date part.
    fn needs_date(&self) -> bool {
        self.pieces.iter().any(|p| match p {
            Piece::Number { value, .. } => value.is_date(),
            Piece::Name { value, .. } => !matches!(value, Name::Meridiem(_)),
            _ => false,
        })
    }

    /// Writes `value` into `out`.
    pub fn format(&self, value: Value, out: &mut String) -> Result<(), String> {
        let (at, zoned) = match value {
            Value::DateTime { at, zoned } => (at, zoned),
            Value::Time(at) => {
                if self.needs_date() {
                    return Err(
                        "the template asks for a date part, but the value is a TIME \
                                (use only hour, minute, second and fraction patterns)"
                            .into(),
                    );
                }
                (at, false)
            }
            Value::Duration { nanos } => return self.format_duration(nanos, out),
        };
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Number {
                    value,
                    width,
                    ordinal,
                } => {
                    let n = number(*value, &at);
                    if *value == Number::YearWithComma {
                        push_with_comma(out, n);
                    } else {
                        push_number(out, n, *width);
                    }
                    if let Some(case) = ordinal {
                        push_cased(out, ordinal_suffix(n), *case);
                    }
                }
                Piece::Name { value, case, pad } => {
                    let (text, longest) = name(*value, &at);
                    push_cased(out, text, *case);
                    if *pad {
                        for _ in text.len()..longest {
                            out.push(' ');
                        }
                    }
                }
                Piece::Fraction { digits } => {
                    let nanos = format!("{:09}", at.nanosecond() % 1_000_000_000);
                    out.push_str(&nanos[..(*digits).min(9)]);
                }
                Piece::Zone(style) => push_zone(out, *style, zoned),
            }
        }
        Ok(())
    }

    fn format_duration(&self, nanos: i128, out: &mut String) -> Result<(), String> {
        if self.needs_date() {
            return Err(
                "the template asks for a date part, but the value is an interval \
                        (use only hour, minute, second and fraction patterns)"
                    .into(),
            );
        }
        if nanos < 0 {
            out.push('-');
        }
        let nanos = nanos.unsigned_abs();
        let seconds = nanos / 1_000_000_000;
        let fraction = (nanos % 1_000_000_000) as u32;
        let hours = (seconds / 3600) as i64;
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Number { value, width, .. } => {
                    let n = match value {
                        Number::Hour24 | Number::Hour1To24 => hours,
                        Number::Hour12 | Number::Hour0To11 => hours % 12,
                        Number::Minute => ((seconds / 60) % 60) as i64,
                        Number::Second => (seconds % 60) as i64,
                        Number::SecondsOfDay => seconds as i64,
                        Number::Millis => (fraction / 1_000_000) as i64,
                        _ => return Err("an interval has no date parts".into()),
                    };
                    push_number(out, n, *width);
                }
                Piece::Fraction { digits } => {
                    let text = format!("{fraction:09}");
                    out.push_str(&text[..(*digits).min(9)]);
                }
                Piece::Name { .. } | Piece::Zone(_) => {
                    return Err("an interval has no names or time zone".into());
                }
            }
        }
        Ok(())
    }
}
pub(super) fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    match pieces.last_mut() {
        Some(Piece::Text(t)) => t.push_str(text),
        _ => pieces.push(Piece::Text(text.to_string())),
    }
}
/// Sunday-first weekday index, 0 (Sunday) to 6.
fn sunday0(date: NaiveDate) -> i64 {
    i64::from(date.weekday().num_days_from_sunday())
}

/// US week of year (Sunday first; week 1 holds January 1st) and the year it belongs to.
fn us_week(date: NaiveDate) -> (i64, i64) {
    // The Saturday ending this week: if it is in the next year, this is week 1 of that year.
    let saturday = date + chrono::Days::new((6 - sunday0(date)) as u64);
    if saturday.year() > date.year() {
        return (1, i64::from(saturday.year()));
    }
    let jan1 = NaiveDate::from_yo_opt(date.year(), 1).unwrap_or(date);
    let week = (i64::from(date.ordinal0()) + sunday0(jan1)) / 7 + 1;
    (week, i64::from(date.year()))
}

fn number(value: Number, at: &NaiveDateTime) -> i64 {
    let date = at.date();
    let year = i64::from(date.year());
    let last = |y: i64, n: Option<u32>| match n {
        Some(n) => y.rem_euclid(10_i64.pow(n)),
        None => y,
    };
    match value {
        Number::Year(n) => last(year, n),
        Number::IsoYear(n) => last(i64::from(date.iso_week().year()), n),
        Number::YearWithComma => year,
        Number::Month => i64::from(date.month()),
        Number::Day => i64::from(date.day()),
        Number::DayOfYear => i64::from(date.ordinal()),
        Number::IsoDayOfYear => {
            let week = i64::from(date.iso_week().week());
            (week - 1) * 7 + i64::from(date.weekday().number_from_monday())
        }
        Number::WeekdayFromSunday => i64::from(date.weekday().number_from_sunday()),
        Number::WeekdayFromMonday => i64::from(date.weekday().number_from_monday()),
        Number::WeekOfMonth => i64::from(date.day0()) / 7 + 1,
        Number::WeekOfYear => i64::from(date.ordinal0()) / 7 + 1,
        Number::IsoWeek => i64::from(date.iso_week().week()),
        Number::UsWeekOfMonth => {
            let first = date.with_day(1).unwrap_or(date);
            (i64::from(date.day0()) + sunday0(first)) / 7 + 1
        }
        Number::UsWeekOfYear => us_week(date).0,
        Number::UsWeekYear => us_week(date).1,
        Number::Quarter => i64::from(date.month0()) / 3 + 1,
        Number::Century => {
            if year > 0 {
                (year - 1) / 100 + 1
            } else {
                year / 100 - 1
            }
        }
        // Julian Day 0 is November 24, 4714 BC (proleptic Gregorian); 2000-01-01 is 2451545.
        Number::JulianDay => i64::from(date.num_days_from_ce()) + 1_721_425,
        Number::Hour24 => i64::from(at.hour()),
        Number::Hour12 => i64::from(at.hour12().1),
        Number::Hour1To24 => match at.hour() {
            0 => 24,
            h => i64::from(h),
        },
        Number::Hour0To11 => i64::from(at.hour() % 12),
        Number::Minute => i64::from(at.minute()),
        Number::Second => i64::from(at.second()),
        Number::SecondsOfDay => i64::from(at.num_seconds_from_midnight()),
        Number::Millis => i64::from(at.nanosecond() / 1_000_000),
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const ROMAN: [&str; 12] = [
    "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII",
];

/// The name and the length of the longest name of its kind (for padding).
fn name(value: Name, at: &NaiveDateTime) -> (&'static str, usize) {
    let month = at.month0() as usize;
    let weekday = at.weekday().num_days_from_monday() as usize;
    match value {
        Name::Month => (MONTHS[month], 9),
        Name::MonthShort => (&MONTHS[month][..3], 3),
        Name::MonthRoman => (ROMAN[month], 4),
        Name::Weekday => (WEEKDAYS[weekday], 9),
        Name::WeekdayShort => (&WEEKDAYS[weekday][..3], 3),
        Name::Meridiem(dots) => match (at.hour() < 12, dots) {
            (true, false) => ("AM", 2),
            (false, false) => ("PM", 2),
            (true, true) => ("A.M.", 4),
            (false, true) => ("P.M.", 4),
        },
        Name::Era(dots) => match (at.year() > 0, dots) {
            (true, false) => ("AD", 2),
            (false, false) => ("BC", 2),
            (true, true) => ("A.D.", 4),
            (false, true) => ("B.C.", 4),
        },
    }
}

fn push_cased(out: &mut String, text: &str, case: Case) {
    match case {
        Case::Upper => out.push_str(&text.to_ascii_uppercase()),
        Case::Lower => out.push_str(&text.to_ascii_lowercase()),
        Case::Capital => {
            let mut chars = text.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.push_str(&chars.as_str().to_ascii_lowercase());
            }
        }
    }
}

fn push_number(out: &mut String, n: i64, width: usize) {
    if n < 0 {
        out.push('-');
    }
    let digits = n.unsigned_abs().to_string();
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

/// `2,024`: thousands separated by commas.
fn push_with_comma(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let digits = n.unsigned_abs().to_string();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
}

fn ordinal_suffix(n: i64) -> &'static str {
    let n = n.unsigned_abs();
    match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

/// The zone of an instant (always shown in UTC, the session time zone); a value without a
/// zone has none (PostgreSQL prints nothing for TZ, and offsets as +00).
fn push_zone(out: &mut String, style: ZoneStyle, zoned: bool) {
    match style {
        ZoneStyle::Name(case) => {
            if zoned {
                push_cased(out, "UTC", case);
            }
        }
        ZoneStyle::Hours => out.push_str("+00"),
        ZoneStyle::Minutes => out.push_str("00"),
        ZoneStyle::Compact => out.push_str("+0000"),
        ZoneStyle::Colon => out.push_str("+00:00"),
        ZoneStyle::IsoZ => out.push('Z'),
    }
}
