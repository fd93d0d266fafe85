//! The key-values of a log line that the shim's records use: `container` (which container the
//! line is about), `error`, and the rest as extra fields.

use log::kv::{Error, Key, Value, VisitSource};
use log::Record;

/// The key naming the container a line is about.
pub const CONTAINER_KEY: &str = "container";
/// The key whose value becomes the record's `error`.
pub const ERROR_KEY: &str = "error";

/// What a line's key-values say, as text.
#[derive(Debug, Default, PartialEq)]
pub struct Fields {
    /// The container the line is about.
    pub container: Option<String>,
    /// The error it reports.
    pub error: Option<String>,
    /// Any other key-values, in the order given.
    pub extra: Vec<(String, String)>,
}

impl Fields {
    /// Collects the key-values of `record`.
    pub fn of(record: &Record) -> Fields {
        let mut fields = Fields::default();
        // Collecting cannot fail: the visitor never returns an error.
        let _ = record.key_values().visit(&mut fields);
        fields
    }
}

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        let text = value.to_string();
        match key.as_str() {
            CONTAINER_KEY => self.container = Some(text),
            ERROR_KEY => self.error = Some(text),
            other => self.extra.push((other.to_string(), text)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_without_key_values_is_about_no_container() {
        let record = Record::builder().args(format_args!("hello")).build();
        assert_eq!(Fields::of(&record), Fields::default());
    }

    #[test]
    fn container_error_and_others_are_told_apart() {
        let kvs: [(&str, &str); 3] = [("pid", "7"), ("container", "c"), ("error", "boom")];
        let record = Record::builder()
            .args(format_args!("x"))
            .key_values(&kvs)
            .build();
        let f = Fields::of(&record);
        assert_eq!(f.container.as_deref(), Some("c"));
        assert_eq!(f.error.as_deref(), Some("boom"));
        assert_eq!(f.extra, [("pid".to_string(), "7".to_string())]);
    }
}
