//! Date/time format templates: PostgreSQL's `to_char` patterns (`YYYY-MM-DD HH24:MI:SS`) and
//! Java's `SimpleDateFormat` patterns, which Flink's `DATE_FORMAT` takes (`yyyy-MM-dd HH:mm`).
//!
//! Both are compiled once into the same list of [`Piece`]s, then each value is written with
//! chrono's calendar (`Datelike`, `Timelike`). PostgreSQL copies text that is not a pattern;
//! Java reserves every ASCII letter, so a Java letter Sabot does not know is an error, never
//! copied. A template asking for a part the value does not have (a year of a TIME, a day of
//! an interval) is an error too, not a made-up 1970.

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

/// PostgreSQL's patterns, longest first where one is a prefix of another.
const POSTGRES_PATTERNS: &[&str] = &[
    "Y,YYY", "YYYY", "YYY", "YY", "IYYY", "IYY", "IY", "IDDD", "ID", "IW", "I", "Y", "MONTH",
    "MON", "MM", "MS", "MI", "DAY", "DDD", "DD", "DY", "D", "HH24", "HH12", "HH", "SSSSS", "SSSS",
    "SS", "US", "FF1", "FF2", "FF3", "FF4", "FF5", "FF6", "A.M.", "P.M.", "AM", "PM", "A.D.",
    "B.C.", "AD", "BC", "WW", "W", "Q", "CC", "J", "RM", "TZH", "TZM", "TZ", "OF",
];

fn case_of(text: &str) -> Case {
    let mut letters = text.chars().filter(char::is_ascii_alphabetic);
    match (letters.next(), letters.next()) {
        (Some(a), _) if a.is_ascii_lowercase() => Case::Lower,
        (Some(_), Some(b)) if b.is_ascii_lowercase() => Case::Capital,
        _ => Case::Upper,
    }
}

/// `text` starts with `pattern`, ignoring ASCII case; compared by bytes (never cuts a char).
fn starts_with_ignore_case(text: &str, pattern: &str) -> bool {
    text.as_bytes()
        .get(..pattern.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(pattern.as_bytes()))
}

impl Template {
    /// Compiles a PostgreSQL `to_char` template. Text that is no pattern is copied; `"..."`
    /// is copied as is; `\` escapes the next character. Modifiers: `FM` (no padding), `TH` /
    /// `th` (ordinal suffix), `FX` and `TM` (no effect on output).
    pub fn postgres(template: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        let mut fill = false;
        while let Some(c) = rest.chars().next() {
            if c == '"' {
                let body = &rest[1..];
                let end = body.find('"').unwrap_or(body.len());
                push_text(&mut pieces, &body[..end]);
                rest = body.get(end + 1..).unwrap_or("");
                continue;
            }
            if c == '\\' {
                let mut chars = rest[1..].chars();
                if let Some(next) = chars.next() {
                    push_text(&mut pieces, &next.to_string());
                }
                rest = chars.as_str();
                continue;
            }
            if starts_with_ignore_case(rest, "FM") {
                fill = true;
                rest = &rest[2..];
                continue;
            }
            if starts_with_ignore_case(rest, "FX") || starts_with_ignore_case(rest, "TM") {
                rest = &rest[2..];
                continue;
            }
            let Some(pattern) = POSTGRES_PATTERNS
                .iter()
                .find(|p| starts_with_ignore_case(rest, p))
            else {
                push_text(&mut pieces, &c.to_string());
                rest = &rest[c.len_utf8()..];
                continue;
            };
            let written = &rest[..pattern.len()];
            rest = &rest[pattern.len()..];
            let case = case_of(written);
            let mut piece = postgres_piece(pattern, case, fill);
            fill = false;
            if let Piece::Number { ordinal, .. } = &mut piece
                && starts_with_ignore_case(rest, "TH")
            {
                *ordinal = Some(case_of(&rest[..2]));
                rest = &rest[2..];
            }
            pieces.push(piece);
        }
        Ok(Self { pieces })
    }

    /// Compiles a Java `SimpleDateFormat` pattern (Flink's `DATE_FORMAT`). Letters are
    /// patterns (an unknown one is an error), `'...'` is text, `''` a quote.
    pub fn java(pattern: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                if chars.get(i + 1) == Some(&'\'') {
                    push_text(&mut pieces, "'");
                    i += 2;
                    continue;
                }
                let mut text = String::new();
                i += 1;
                while i < chars.len() {
                    if chars[i] == '\'' {
                        if chars.get(i + 1) == Some(&'\'') {
                            text.push('\'');
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(format!("unterminated quote in date format '{pattern}'"));
                }
                push_text(&mut pieces, &text);
                i += 1;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                push_text(&mut pieces, &c.to_string());
                i += 1;
                continue;
            }
            let mut count = 1;
            while chars.get(i + count) == Some(&c) {
                count += 1;
            }
            i += count;
            pieces.push(java_piece(c, count).ok_or_else(|| {
                format!(
                    "date format '{pattern}': pattern letter '{c}' is not supported (supported: \
                     G y Y M L w W D d F E u a H k K h m s S z Z X; quote text with '...')"
                )
            })?);
        }
        Ok(Self { pieces })
    }

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

fn push_text(pieces: &mut Vec<Piece>, text: &str) {
    match pieces.last_mut() {
        Some(Piece::Text(t)) => t.push_str(text),
        _ => pieces.push(Piece::Text(text.to_string())),
    }
}

fn postgres_piece(pattern: &str, case: Case, fill: bool) -> Piece {
    let number = |value, width| Piece::Number {
        value,
        width: if fill { 0 } else { width },
        ordinal: None,
    };
    let name = |value| Piece::Name {
        value,
        case,
        pad: !fill,
    };
    match pattern {
        "Y,YYY" => number(Number::YearWithComma, 0),
        "YYYY" => number(Number::Year(None), 4),
        "YYY" => number(Number::Year(Some(3)), 3),
        "YY" => number(Number::Year(Some(2)), 2),
        "Y" => number(Number::Year(Some(1)), 1),
        "IYYY" => number(Number::IsoYear(None), 4),
        "IYY" => number(Number::IsoYear(Some(3)), 3),
        "IY" => number(Number::IsoYear(Some(2)), 2),
        "I" => number(Number::IsoYear(Some(1)), 1),
        "IDDD" => number(Number::IsoDayOfYear, 3),
        "ID" => number(Number::WeekdayFromMonday, 1),
        "IW" => number(Number::IsoWeek, 2),
        "MONTH" => name(Name::Month),
        "MON" => Piece::Name {
            value: Name::MonthShort,
            case,
            pad: false,
        },
        "MM" => number(Number::Month, 2),
        "MS" => Piece::Fraction { digits: 3 },
        "US" => Piece::Fraction { digits: 6 },
        "MI" => number(Number::Minute, 2),
        "DAY" => name(Name::Weekday),
        "DDD" => number(Number::DayOfYear, 3),
        "DD" => number(Number::Day, 2),
        "DY" => Piece::Name {
            value: Name::WeekdayShort,
            case,
            pad: false,
        },
        "D" => number(Number::WeekdayFromSunday, 1),
        "HH24" => number(Number::Hour24, 2),
        "HH12" | "HH" => number(Number::Hour12, 2),
        "SSSSS" | "SSSS" => number(Number::SecondsOfDay, 0),
        "SS" => number(Number::Second, 2),
        "FF1" | "FF2" | "FF3" | "FF4" | "FF5" | "FF6" => Piece::Fraction {
            digits: usize::from(pattern.as_bytes()[2] - b'0'),
        },
        "A.M." | "P.M." => Piece::Name {
            value: Name::Meridiem(true),
            case,
            pad: false,
        },
        "AM" | "PM" => Piece::Name {
            value: Name::Meridiem(false),
            case,
            pad: false,
        },
        "A.D." | "B.C." => Piece::Name {
            value: Name::Era(true),
            case,
            pad: false,
        },
        "AD" | "BC" => Piece::Name {
            value: Name::Era(false),
            case,
            pad: false,
        },
        "WW" => number(Number::WeekOfYear, 2),
        "W" => number(Number::WeekOfMonth, 1),
        "Q" => number(Number::Quarter, 1),
        "CC" => number(Number::Century, 2),
        "J" => number(Number::JulianDay, 0),
        "RM" => Piece::Name {
            value: Name::MonthRoman,
            case,
            pad: !fill,
        },
        "TZH" => Piece::Zone(ZoneStyle::Hours),
        "TZM" => Piece::Zone(ZoneStyle::Minutes),
        "TZ" => Piece::Zone(ZoneStyle::Name(case)),
        // "OF"
        _ => Piece::Zone(ZoneStyle::Hours),
    }
}

fn java_piece(letter: char, count: usize) -> Option<Piece> {
    let number = |value, width| Piece::Number {
        value,
        width,
        ordinal: None,
    };
    let text = |value| Piece::Name {
        value,
        case: Case::Capital,
        pad: false,
    };
    Some(match letter {
        'G' => Piece::Name {
            value: Name::Era(false),
            case: Case::Upper,
            pad: false,
        },
        'y' if count == 2 => number(Number::Year(Some(2)), 2),
        'y' => number(Number::Year(None), count),
        'Y' if count == 2 => number(Number::UsWeekYear, 2),
        'Y' => number(Number::UsWeekYear, count),
        'M' | 'L' if count >= 4 => text(Name::Month),
        'M' | 'L' if count == 3 => text(Name::MonthShort),
        'M' | 'L' => number(Number::Month, count),
        'w' => number(Number::UsWeekOfYear, count),
        'W' => number(Number::UsWeekOfMonth, count),
        'D' => number(Number::DayOfYear, count),
        'd' => number(Number::Day, count),
        'F' => number(Number::WeekOfMonth, count),
        'E' if count >= 4 => text(Name::Weekday),
        'E' => text(Name::WeekdayShort),
        'u' => number(Number::WeekdayFromMonday, count),
        'a' => Piece::Name {
            value: Name::Meridiem(false),
            case: Case::Upper,
            pad: false,
        },
        'H' => number(Number::Hour24, count),
        'k' => number(Number::Hour1To24, count),
        'K' => number(Number::Hour0To11, count),
        'h' => number(Number::Hour12, count),
        'm' => number(Number::Minute, count),
        's' => number(Number::Second, count),
        'S' => number(Number::Millis, count),
        'z' => Piece::Zone(ZoneStyle::Name(Case::Upper)),
        'Z' => Piece::Zone(ZoneStyle::Compact),
        'X' if count == 1 => Piece::Zone(ZoneStyle::IsoZ),
        'X' if count == 2 => Piece::Zone(ZoneStyle::Compact),
        'X' => Piece::Zone(ZoneStyle::Colon),
        _ => return None,
    })
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

#[cfg(test)]
mod tests {
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
}
