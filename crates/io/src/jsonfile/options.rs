//! json-file options as Docker spells them: `max-size`, `max-file`,
//! `compress`, `tag`.
//!
//! They reach Scribe as key/value pairs (OCI annotations, or the runtime's
//! options TOML); parsing and validation follow Docker's `jsonfilelog.New`, so a
//! configuration that Docker accepts means the same here:
//!
//! - `max-size`: go-units `FromHumanSize`, i.e. **SI multiples** (`10m` is
//!   10 000 000 bytes, `1k` is 1000); optional `b`/`ib` after the unit, optional
//!   space, fractions allowed (`1.5m`); must be positive. Unset: no rotation.
//! - `max-file`: integer >= 1 (default 1), the number of files kept including the
//!   live one, at most [`MAX_FILE_LIMIT`] (Docker sets no upper bound; Scribe does, see there).
//! - `compress`: Go `ParseBool` spellings; needs `max-file` >= 2 and `max-size`.
//! - `tag`: see [`TagTemplate`].
//!
//! Any other key is an error naming that key.

use std::fmt;

use super::tag::TagTemplate;

/// Validated json-file options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFileOptions {
    /// Rotate before a write that would take the live file past this many
    /// bytes; `None` never rotates.
    pub max_size: Option<u64>,
    /// Files kept, the live one included (>= 1).
    pub max_file: u32,
    /// Gzip rotated files (`<path>.1.gz`, ...).
    pub compress: bool,
    /// Tag template rendered into each entry's `attrs.tag`.
    pub tag: Option<TagTemplate>,
}

impl Default for JsonFileOptions {
    fn default() -> Self {
        JsonFileOptions {
            max_size: None,
            max_file: 1,
            compress: false,
            tag: None,
        }
    }
}

/// An option that was refused; names the key and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option key (`max-size`, ...), or the unknown key.
    pub key: String,
    /// The value given for it.
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

/// How much of a refused value an error quotes (a tag template may be huge).
const QUOTED: usize = 64;

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value.char_indices().nth(QUOTED) {
            Some((cut, _)) => write!(
                f,
                "json-file option {}={:?}... ({} bytes): {}",
                self.key,
                &self.value[..cut],
                self.value.len(),
                self.reason
            ),
            None => write!(
                f,
                "json-file option {}={:?}: {}",
                self.key, self.value, self.reason
            ),
        }
    }
}

impl std::error::Error for OptionError {}

/// The largest `max-file` accepted. Docker parses `max-file` with `strconv.Atoi` and sets no
/// upper bound; its default is 1 and kubelet's `containerLogMaxFiles` defaults to 5. A rotation
/// renames every file kept, so `max-file` is the cost of one rotation; and `max-size` is at
/// least 1 byte, so a tiny `max-size` with a huge `max-file` keeps a container's directory full
/// of tens of thousands of files. 1000 files is 200 times kubelet's default and keeps a rotation
/// at about a millisecond of renames; anyone wanting more history wants a larger `max-size`.
pub const MAX_FILE_LIMIT: u32 = 1000;

/// The keys [`JsonFileOptions::from_pairs`] understands.
pub const OPTION_KEYS: [&str; 4] = ["max-size", "max-file", "compress", "tag"];

impl JsonFileOptions {
    /// Parses Docker-style `key=value` options; unknown keys are errors.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, OptionError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut opts = JsonFileOptions::default();
        let mut compress_given: Option<String> = None;
        for (key, value) in pairs {
            let err = |reason: String| OptionError {
                key: key.to_owned(),
                value: value.to_owned(),
                reason,
            };
            match key {
                "max-size" => opts.max_size = Some(parse_size(value).map_err(err)?),
                "max-file" => {
                    let n: i64 = value.parse().map_err(|_| err("not an integer".into()))?;
                    if n < 1 {
                        return Err(err("max-file cannot be less than 1".into()));
                    }
                    if n > i64::from(MAX_FILE_LIMIT) {
                        return Err(err(format!(
                            "max-file cannot be more than {MAX_FILE_LIMIT} (each rotation renames every kept file; use a larger max-size for more history)"
                        )));
                    }
                    opts.max_file = u32::try_from(n).map_err(|_| err("too large".into()))?;
                }
                "compress" => {
                    opts.compress = parse_bool(value)
                        .ok_or_else(|| err("not a boolean (true/false/1/0/t/f)".into()))?;
                    compress_given = Some(value.to_owned());
                }
                "tag" => {
                    opts.tag = Some(TagTemplate::parse(value).map_err(|e| err(e.to_string()))?)
                }
                _ => {
                    return Err(err(format!(
                        "unknown json-file option; supported: {}",
                        OPTION_KEYS.join(", ")
                    )))
                }
            }
        }
        if opts.compress && (opts.max_file < 2 || opts.max_size.is_none()) {
            return Err(OptionError {
                key: "compress".into(),
                value: compress_given.unwrap_or_default(),
                reason:
                    "compress cannot be true when max-file is less than 2 or max-size is not set"
                        .into(),
            });
        }
        Ok(opts)
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a Docker `max-size` value (go-units `FromHumanSize`, SI multiples).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {s:?}; expected e.g. 512k, 10m, 1g or a byte count");
    // Number: the longest prefix of digits and dots; then an optional space.
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, sfx) = s.split_at(num_end);
    let sfx = sfx.strip_prefix(' ').unwrap_or(sfx).to_ascii_lowercase();
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return Err(invalid());
    }
    let value: f64 = num.parse().map_err(|_| invalid())?;
    let mul: f64 = match sfx.as_str() {
        "" | "b" => 1.0,
        _ => {
            let mut chars = sfx.chars();
            let unit = match chars.next() {
                Some('k') => 1e3,
                Some('m') => 1e6,
                Some('g') => 1e9,
                Some('t') => 1e12,
                Some('p') => 1e15,
                _ => return Err(invalid()),
            };
            match chars.as_str() {
                "" | "b" | "ib" => unit,
                _ => return Err(invalid()),
            }
        }
    };
    let bytes = value * mul;
    if bytes.is_nan() || bytes < 1.0 {
        return Err("max-size must be a positive number".into());
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("size {s:?} is too large"));
    }
    // Truncation matches Go's int64(size).
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_go_units() {
        assert_eq!(parse_size("10m"), Ok(10_000_000));
        assert_eq!(parse_size("1g"), Ok(1_000_000_000));
        assert_eq!(parse_size("512k"), Ok(512_000));
        assert_eq!(parse_size("512K"), Ok(512_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("10MiB"), Ok(10_000_000));
        assert_eq!(parse_size("10 kb"), Ok(10_000));
        assert_eq!(parse_size("1.5m"), Ok(1_500_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4096b"), Ok(4096));
        for bad in [
            "", "m", "10x", "10mm", "10mbb", "-1", "1..2", "0", "0.1", " 10", "1e3", "10kbit",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn parses_docker_log_opts() {
        let o = JsonFileOptions::from_pairs([
            ("max-size", "10m"),
            ("max-file", "3"),
            ("compress", "true"),
            ("tag", "{{.Name}}/{{.ID}}"),
        ])
        .expect("valid options");
        assert_eq!(o.max_size, Some(10_000_000));
        assert_eq!(o.max_file, 3);
        assert!(o.compress);
        assert!(o.tag.is_some());
        assert_eq!(
            JsonFileOptions::from_pairs([]),
            Ok(JsonFileOptions::default())
        );
    }

    #[test]
    fn max_file_is_bounded() {
        let o = JsonFileOptions::from_pairs([("max-file", "1000")]).expect("the bound itself");
        assert_eq!(o.max_file, MAX_FILE_LIMIT);
        let e = JsonFileOptions::from_pairs([("max-file", "100000")]).unwrap_err();
        assert!(e.to_string().contains("cannot be more than 1000"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (vec![("max-size", "ten")], "max-size"),
            (vec![("max-size", "0")], "max-size"),
            (vec![("max-file", "0")], "max-file"),
            (vec![("max-file", "x")], "max-file"),
            (vec![("max-file", "1001")], "max-file"),
            (vec![("max-file", "100000")], "max-file"),
            (vec![("compress", "yes")], "compress"),
            (vec![("tag", "{{.Nope}}")], "tag"),
            (vec![("max-sise", "1m")], "max-sise"),
            (vec![("compress", "1"), ("max-file", "2")], "compress"),
            (vec![("compress", "true"), ("max-size", "1m")], "compress"),
        ];
        for (pairs, key) in cases {
            let e = JsonFileOptions::from_pairs(pairs.iter().copied()).unwrap_err();
            assert_eq!(e.key, key);
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("yes"), None);
    }
}
