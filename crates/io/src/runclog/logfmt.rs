//! logrus's text format: `time="..." level=error msg="..." key=value`.
//!
//! What runc (and other Go runtimes) write to `--log` without
//! `--log-format json`. Values are bare words or Go-quoted strings. A line is
//! accepted only if it is entirely `key=value` pairs and has both `level` and
//! `msg`; anything else is left to the caller as raw text.

use serde_json::{Map, Value};

/// Parses a logrus text line into its fields, or `None` if it is not one.
pub(crate) fn parse(line: &str) -> Option<Map<String, Value>> {
    let mut map = Map::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = &rest[..eq];
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return None;
        }
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let (v, after) = unquote(quoted)?;
            value = v;
            rest = after;
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            value = rest[..end].to_owned();
            rest = &rest[end..];
        }
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        rest = rest.trim_start();
        map.insert(key.to_owned(), Value::String(value));
    }
    (map.contains_key("level") && map.contains_key("msg")).then_some(map)
}

/// Decodes a Go-quoted string body (after the opening quote); returns the
/// value and the text after the closing quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    'u' | 'x' => {
                        let digits = if e == 'u' { 4 } else { 2 };
                        let mut code = 0u32;
                        for _ in 0..digits {
                            code = code * 16 + chars.next()?.1.to_digit(16)?;
                        }
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let m = parse(r#"time="2024-05-01T12:00:00Z" level=warning msg="a \"b\"\tc\u00e9" n=1"#)
            .unwrap();
        assert_eq!(m["level"], "warning");
        assert_eq!(m["msg"], "a \"b\"\tcé");
        assert_eq!(m["n"], "1");
    }

    #[test]
    fn rejects_non_logrus_text() {
        assert!(parse("hello world").is_none());
        assert!(parse("level=info").is_none()); // no msg
        assert!(parse(r#"level=info msg="unterminated"#).is_none());
        assert!(parse(r#"level=info msg="x"y"#).is_none());
        assert!(parse("a b=c level=info msg=x").is_none());
        assert!(parse("=x level=info msg=x").is_none());
    }
}
