//! Docker's `tag` log option: a small Go-template over container facts.
//!
//! Docker renders `--log-opt tag=...` with `text/template` against its
//! `logger.Info` and, for json-file, stores the result in every entry as
//! `"attrs":{"tag":"..."}`. Scribe supports the field references that make
//! sense for a shim — `{{.ID}}`, `{{.FullID}}`, `{{.Name}}`, `{{.ImageName}}`,
//! `{{.ImageID}}`, `{{.ImageFullID}}`, `{{.DaemonName}}` — and refuses anything
//! else (functions, pipelines, unknown fields) when the option is parsed, so a
//! typo fails container creation instead of producing odd tags.
//!
//! The tag is copied into every entry, so its size is bounded: a template whose
//! text, or whose expansion for the container, is longer than [`MAX_TAG_LEN`]
//! bytes is refused (Docker has no bound: a 200,000-character tag turned 200
//! short lines into 40 MB).

use std::fmt;

/// The longest tag, in bytes, a template may produce. Real tags are a name and an
/// id or two (syslog's APP-NAME allows 48 bytes); 1 KiB leaves room for long
/// image references while keeping the per-entry overhead bounded.
pub const MAX_TAG_LEN: usize = 1024;

/// The container facts a tag template may reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagInfo {
    /// Full container id (`{{.FullID}}`; `{{.ID}}` is its first 12 characters).
    pub container_id: String,
    /// Container name (`{{.Name}}`); a leading `/` is dropped as Docker does.
    pub container_name: String,
    /// Image reference (`{{.ImageName}}`).
    pub image_name: String,
    /// Image id, e.g. `sha256:...` (`{{.ImageFullID}}`; `{{.ImageID}}` is the
    /// first 12 characters after the algorithm prefix).
    pub image_id: String,
    /// The daemon's name (`{{.DaemonName}}`; `docker` in Docker, `scribe` here).
    pub daemon_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    FullId,
    Name,
    ImageName,
    ImageId,
    ImageFullId,
    DaemonName,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Id => "ID",
            Field::FullId => "FullID",
            Field::Name => "Name",
            Field::ImageName => "ImageName",
            Field::ImageId => "ImageID",
            Field::ImageFullId => "ImageFullID",
            Field::DaemonName => "DaemonName",
        }
    }

    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "ID" => Field::Id,
            "FullID" => Field::FullId,
            "Name" => Field::Name,
            "ImageName" => Field::ImageName,
            "ImageID" => Field::ImageId,
            "ImageFullID" => Field::ImageFullId,
            "DaemonName" => Field::DaemonName,
            _ => return None,
        })
    }

    fn render(self, info: &TagInfo) -> &str {
        match self {
            Field::Id => truncate_id(&info.container_id),
            Field::FullId => &info.container_id,
            Field::Name => info
                .container_name
                .strip_prefix('/')
                .unwrap_or(&info.container_name),
            Field::ImageName => &info.image_name,
            Field::ImageId => truncate_id(&info.image_id),
            Field::ImageFullId => &info.image_id,
            Field::DaemonName => &info.daemon_name,
        }
    }
}

/// Docker's `stringid.TruncateID`: drop an `algo:` prefix, keep 12 characters.
fn truncate_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |(_, rest)| rest);
    match id.char_indices().nth(12) {
        Some((i, _)) => &id[..i],
        None => id,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A parsed, validated tag template, ready to render per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate {
    pieces: Vec<Piece>,
}

/// Why a tag template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagError {
    template: String,
    reason: String,
}

/// How much of a refused template an error quotes.
const QUOTED: usize = 64;

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A template may be huge: quote its start and say how long it is.
        match self.template.char_indices().nth(QUOTED) {
            Some((cut, _)) => write!(
                f,
                "tag template {:?}... ({} bytes): {}",
                &self.template[..cut],
                self.template.len(),
                self.reason
            ),
            None => write!(f, "tag template {:?}: {}", self.template, self.reason),
        }
    }
}

impl std::error::Error for TagError {}

impl TagTemplate {
    /// Parses a template such as `{{.Name}}/{{.ID}}`.
    pub fn parse(template: &str) -> Result<Self, TagError> {
        let fail = |reason: String| TagError {
            template: template.to_owned(),
            reason,
        };
        if template.len() > MAX_TAG_LEN {
            return Err(fail(format!(
                "longer than the {MAX_TAG_LEN}-byte limit of a tag"
            )));
        }
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| fail("unclosed action: missing \"}}\"".into()))?;
            let action = after[..close].trim();
            // Go's whitespace-trimming markers `{{-` / `-}}` do not change a field reference.
            let action = action.strip_prefix("- ").unwrap_or(action);
            let action = action.strip_suffix(" -").unwrap_or(action).trim();
            let field = action
                .strip_prefix('.')
                .and_then(Field::parse)
                .ok_or_else(|| {
                    fail(format!(
                        "unsupported action {{{{{action}}}}}; supported: {{{{.ID}}}}, {{{{.FullID}}}}, {{{{.Name}}}}, {{{{.ImageName}}}}, {{{{.ImageID}}}}, {{{{.ImageFullID}}}}, {{{{.DaemonName}}}}"
                    ))
                })?;
            pieces.push(Piece::Field(field));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(TagTemplate { pieces })
    }

    /// Renders the template for one container; an expansion longer than
    /// [`MAX_TAG_LEN`] bytes is refused (the fields come from the container:
    /// a long image reference can push a template over).
    pub fn render(&self, info: &TagInfo) -> Result<String, TagError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(f.render(info)),
            }
            if out.len() > MAX_TAG_LEN {
                return Err(TagError {
                    template: self.source(),
                    reason: format!(
                        "expands to more than the {MAX_TAG_LEN}-byte limit of a tag for container {}",
                        info.container_id
                    ),
                });
            }
        }
        Ok(out)
    }

    /// The template's text again (for errors).
    fn source(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Field(f) => format!("{{{{.{}}}}}", f.name()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TagInfo {
        TagInfo {
            container_id: "0123456789abcdef0123456789abcdef".into(),
            container_name: "/web".into(),
            image_name: "nginx:1.21".into(),
            image_id: "sha256:fedcba9876543210fedcba".into(),
            daemon_name: "scribe".into(),
        }
    }

    fn render(t: &str) -> String {
        TagTemplate::parse(t)
            .expect("template parses")
            .render(&info())
            .expect("within the limit")
    }

    #[test]
    fn renders_every_field() {
        assert_eq!(render("{{.Name}}/{{.ID}}"), "web/0123456789ab");
        assert_eq!(render("{{.FullID}}"), "0123456789abcdef0123456789abcdef");
        assert_eq!(
            render("{{ .ImageName }}|{{.ImageID}}"),
            "nginx:1.21|fedcba987654"
        );
        assert_eq!(render("{{.ImageFullID}}"), "sha256:fedcba9876543210fedcba");
        assert_eq!(render("[{{.DaemonName}}]"), "[scribe]");
        assert_eq!(render("{{- .Name -}}"), "web");
        assert_eq!(render("plain"), "plain");
        assert_eq!(render(""), "");
        assert_eq!(render("a}}b"), "a}}b");
    }

    #[test]
    fn short_ids_tolerate_short_input() {
        let mut i = info();
        i.container_id = "abc".into();
        i.image_id = "".into();
        let t = TagTemplate::parse("{{.ID}}-{{.ImageID}}").unwrap();
        assert_eq!(t.render(&i).unwrap(), "abc-");
    }

    #[test]
    fn rejects_unknown_fields_and_functions() {
        let e = TagTemplate::parse("{{.Hostname}}").unwrap_err().to_string();
        assert!(e.contains("{{.Hostname}}"), "{e}");
        assert!(TagTemplate::parse("{{join .Names \",\"}}").is_err());
        assert!(TagTemplate::parse("{{.ID")
            .unwrap_err()
            .to_string()
            .contains("unclosed"));
        assert!(TagTemplate::parse("{{}}").is_err());
        assert!(TagTemplate::parse("{{.id}}").is_err());
    }

    #[test]
    fn tags_are_bounded() {
        // A template whose text alone is over the limit is refused when parsed, and the
        // error quotes only its start.
        let huge = "x".repeat(200_000);
        let e = TagTemplate::parse(&huge).unwrap_err().to_string();
        assert!(e.contains("1024-byte limit"), "{e}");
        assert!(e.contains("200000 bytes") && e.len() < 300, "{e}");
        let at_limit = "y".repeat(MAX_TAG_LEN);
        assert_eq!(render(&at_limit).len(), MAX_TAG_LEN);
        // One whose expansion for this container is over the limit is refused at render.
        let mut i = info();
        i.image_name = "r/".repeat(400);
        let t = TagTemplate::parse("{{.ImageName}}-{{.Name}}").unwrap();
        assert!(t.render(&i).is_ok());
        let t = TagTemplate::parse("{{.ImageName}}{{.ImageName}}").unwrap();
        let e = t.render(&i).unwrap_err().to_string();
        assert!(
            e.contains("expands to more than") && e.contains(&i.container_id),
            "{e}"
        );
        assert!(e.contains("{{.ImageName}}{{.ImageName}}"), "{e}");
    }
}
