//! PostgreSQL's `to_char` template patterns, compiled into [`Piece`]s.

use super::{Case, Name, Number, Piece, Template, ZoneStyle, push_text};

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
