//! Java's `SimpleDateFormat` pattern letters (Flink's `DATE_FORMAT`), compiled into
//! [`Piece`]s.

use super::{Case, Name, Number, Piece, Template, ZoneStyle, push_text};

impl Template {
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
