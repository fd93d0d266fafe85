//! The results table (console and Markdown), the goals, and docs/benchmarks.md.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// One measured figure for each runtime.
#[derive(Debug, Clone)]
pub struct Row {
    /// Stable key, for goals.
    pub id: &'static str,
    pub metric: String,
    pub unit: &'static str,
    pub decimals: usize,
    /// No ratio is shown to a peer value at or below this (a ratio to ~0 says nothing).
    pub ratio_floor: f64,
    /// Runtime key -> value.
    pub values: BTreeMap<String, f64>,
    pub note: String,
}

impl Row {
    pub fn new(id: &'static str, metric: &str, unit: &'static str) -> Row {
        Row {
            id,
            metric: metric.to_string(),
            unit,
            decimals: 0,
            ratio_floor: 0.0,
            values: BTreeMap::new(),
            note: String::new(),
        }
    }
    pub fn decimals(mut self, d: usize) -> Row {
        self.decimals = d;
        self
    }
    pub fn ratio_floor(mut self, f: f64) -> Row {
        self.ratio_floor = f;
        self
    }
    pub fn set(&mut self, rt: &str, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.values.insert(rt.to_string(), v);
        }
    }
    pub fn note(&mut self, n: impl AsRef<str>) {
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(n.as_ref());
    }
    fn fmt(&self, rt: &str) -> String {
        match self.values.get(rt) {
            Some(v) => format!("{:.*}", self.decimals, v),
            None => "-".into(),
        }
    }
    fn ratio(&self, a: &str, b: &str) -> String {
        match (self.values.get(a), self.values.get(b)) {
            (Some(x), Some(y)) if *x == 0.0 && *y == 0.0 => "=".into(),
            (Some(x), Some(y)) if y.abs() > self.ratio_floor && *y != 0.0 => {
                format!("{:.2}x", x / y)
            }
            _ => "-".into(),
        }
    }
}

/// A goal of the issue and how far it is met.
#[derive(Debug, Clone)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub verdict: String,
}

impl Goal {
    /// `measured` against `target`; `unit` for the message.
    pub fn check(
        goal: &str,
        measured: Option<f64>,
        target: f64,
        better: Better,
        unit: &str,
    ) -> Goal {
        let Some(m) = measured else {
            return Goal {
                goal: goal.into(),
                measured: "not measured".into(),
                verdict: "unknown".into(),
            };
        };
        let shown = fmt_num(m, unit);
        let met = match better {
            Better::Lower => m <= target,
            Better::Higher => m >= target,
        };
        let verdict = if met {
            "met".to_string()
        } else if target == 0.0 {
            format!("missed by {shown}")
        } else if better == Better::Lower {
            let over = (m / target - 1.0) * 100.0;
            if over < 10.0 {
                format!("missed: {over:.1}% over the goal")
            } else {
                format!("missed: {:.2}x the goal ({over:.0}% over)", m / target)
            }
        } else {
            format!(
                "missed: {:.0}% short of the goal ({} short)",
                (1.0 - m / target) * 100.0,
                fmt_num(target - m, unit)
            )
        };
        Goal {
            goal: goal.into(),
            measured: shown,
            verdict,
        }
    }
}

fn fmt_num(v: f64, unit: &str) -> String {
    let s = if unit == "x" {
        format!("{v:.3}x")
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.2} {unit}")
    };
    s.trim().to_string()
}

/// Everything one run produced.
#[derive(Debug, Default)]
pub struct Report {
    /// (key, column label).
    pub runtimes: Vec<(String, String)>,
    pub sections: Vec<(String, Vec<Row>)>,
    /// Errors, skipped peers and other remarks.
    pub notes: Vec<String>,
    /// (what, version text).
    pub versions: Vec<(String, String)>,
    pub date: String,
    pub command: String,
    pub machine: String,
    pub duration_secs: f64,
    pub goals: Vec<Goal>,
    pub settings: String,
}

impl Report {
    pub fn row(&self, id: &str) -> Option<&Row> {
        self.sections
            .iter()
            .flat_map(|(_, rows)| rows.iter())
            .find(|r| r.id == id)
    }

    pub fn value(&self, id: &str, rt: &str) -> Option<f64> {
        self.row(id).and_then(|r| r.values.get(rt).copied())
    }

    /// Ratio of Scribe's value to `peer`'s for row `id`.
    pub fn ratio(&self, id: &str, peer: &str) -> Option<f64> {
        let s = self.value(id, "scribe")?;
        let p = self.value(id, peer)?;
        (p != 0.0).then_some(s / p)
    }

    fn peers(&self) -> Vec<&(String, String)> {
        self.runtimes
            .iter()
            .filter(|(k, _)| k != "scribe")
            .collect()
    }

    fn header(&self) -> Vec<String> {
        let mut h = vec!["metric".to_string(), "unit".to_string()];
        h.extend(self.runtimes.iter().map(|(_, l)| l.clone()));
        h.extend(self.peers().iter().map(|(k, _)| format!("scribe/{k}")));
        h.push("note".into());
        h
    }

    fn cells(&self, r: &Row) -> Vec<String> {
        let mut c = vec![r.metric.clone(), r.unit.to_string()];
        c.extend(self.runtimes.iter().map(|(k, _)| r.fmt(k)));
        c.extend(self.peers().iter().map(|(k, _)| r.ratio("scribe", k)));
        c.push(r.note.clone());
        c
    }

    /// The plain-text table for the terminal.
    pub fn table_text(&self) -> String {
        let header = self.header();
        let mut all: Vec<Vec<String>> = vec![header.clone()];
        for (_, rows) in &self.sections {
            for r in rows {
                all.push(self.cells(r));
            }
        }
        let ncol = header.len();
        let mut w = vec![0usize; ncol];
        for row in &all {
            for (i, c) in row.iter().enumerate().take(ncol - 1) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i == ncol - 1 {
                    s.push_str(c);
                } else if i < 2 {
                    let _ = write!(s, "{c:<width$}  ", width = w[i]);
                } else {
                    let _ = write!(s, "{c:>width$}  ", width = w[i]);
                }
            }
            s.trim_end().to_string()
        };
        let mut out = String::new();
        out.push_str(&line(&header));
        out.push('\n');
        let total: usize = w.iter().take(ncol - 1).map(|x| x + 2).sum::<usize>() + 4;
        for (title, rows) in &self.sections {
            let _ = writeln!(
                out,
                "-- {title} {}",
                "-".repeat(total.saturating_sub(title.len() + 4))
            );
            for r in rows {
                out.push_str(&line(&self.cells(r)));
                out.push('\n');
            }
        }
        out
    }

    pub fn goals_text(&self) -> String {
        let mut out = String::new();
        let w = self.goals.iter().map(|g| g.goal.len()).max().unwrap_or(0);
        let wm = self
            .goals
            .iter()
            .map(|g| g.measured.len())
            .max()
            .unwrap_or(0);
        for g in &self.goals {
            let _ = writeln!(
                out,
                "{:<w$}  {:>wm$}  {}",
                g.goal,
                g.measured,
                g.verdict,
                w = w,
                wm = wm
            );
        }
        out
    }

    /// The generated Markdown section.
    pub fn markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut md = String::new();
        let _ = writeln!(md, "Run: {} ({:.0} s).\n", self.date, self.duration_secs);
        let _ = writeln!(md, "Command: `make bench`, i.e. `{}`.\n", self.command);
        let _ = writeln!(md, "Settings: {}.\n", self.settings);
        let _ = writeln!(md, "Machine: {}.\n", self.machine);
        md.push_str("| component | version |\n| --- | --- |\n");
        for (k, v) in &self.versions {
            let _ = writeln!(md, "| {} | {} |", esc(k), esc(v));
        }
        md.push_str("\n### Results\n\n");
        let header = self.header();
        let _ = writeln!(md, "| {} |", header.join(" | "));
        let _ = writeln!(
            md,
            "|{}",
            header
                .iter()
                .enumerate()
                .map(|(i, _)| if i < 2 || i == header.len() - 1 {
                    " --- |"
                } else {
                    " ---: |"
                })
                .collect::<String>()
        );
        for (title, rows) in &self.sections {
            let mut cells = vec![format!("**{}**", esc(title))];
            cells.extend(vec![String::new(); header.len() - 1]);
            let _ = writeln!(md, "| {} |", cells.join(" | "));
            for r in rows {
                let c: Vec<String> = self.cells(r).iter().map(|x| esc(x)).collect();
                let _ = writeln!(md, "| {} |", c.join(" | "));
            }
        }
        md.push_str(
            "\n### Goals (issue 7)\n\n| goal | Scribe measured | verdict |\n| --- | ---: | --- |\n",
        );
        for g in &self.goals {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                esc(&g.goal),
                esc(&g.measured),
                esc(&g.verdict)
            );
        }
        if !self.notes.is_empty() {
            md.push_str("\n### Notes from this run\n\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {}", esc(n));
            }
        }
        md
    }
}

const BEGIN: &str = "<!-- scribe-bench:begin (generated by `make bench`; edits between these markers are overwritten) -->";
const END: &str = "<!-- scribe-bench:end -->";

/// `path` as the report names it: relative to the workspace when it lies inside it
/// (`target/release/...`, `.cache/...`), so a committed report does not carry the directory the
/// checkout happened to live in on the machine that ran it; other paths (`/usr/bin/...`) as given.
pub fn shown_path(path: &Path) -> String {
    match path.strip_prefix(scribe_e2e::workspace_dir()) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.display().to_string(),
    }
}

/// `text` with every mention of the workspace directory made relative (notes and error messages
/// quote paths too).
fn without_workspace_dir(text: &str) -> String {
    let ws = scribe_e2e::workspace_dir();
    text.replace(&format!("{}/", ws.display()), "")
}

/// Writes the generated section into `path`, keeping what is outside the markers.
pub fn write_markdown(path: &Path, generated: &str) -> Result<()> {
    let generated = without_workspace_dir(generated);
    let old = match std::fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let block = format!("{BEGIN}\n\n{}\n{END}", generated.trim_end());
    let text = match old.as_deref().and_then(|s| {
        let b = s.find(BEGIN)?;
        let e = s[b..].find(END)? + b + END.len();
        Some((b, e))
    }) {
        Some((b, e)) => {
            let s = old.as_deref().unwrap_or_default();
            format!("{}{}{}", &s[..b], block, &s[e..])
        }
        None => {
            let mut s = old.unwrap_or_else(|| "# Benchmarks\n\n".to_string());
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s.push('\n');
            s.push_str(&block);
            s.push('\n');
            s
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn workspace_paths_are_shown_relative() {
        let ws = scribe_e2e::workspace_dir();
        let shim = ws.join("target/release/containerd-shim-scribe-v2");
        assert_eq!(
            shown_path(&shim),
            "target/release/containerd-shim-scribe-v2"
        );
        assert_eq!(
            shown_path(Path::new("/usr/bin/containerd-shim-runc-v2")),
            "/usr/bin/containerd-shim-runc-v2"
        );
        let note = format!(
            "rust shim `{}`",
            ws.join(".cache/rust-shim/bin/x").display()
        );
        assert_eq!(
            without_workspace_dir(&note),
            "rust shim `.cache/rust-shim/bin/x`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_verdicts() {
        let g = Goal::check("g", Some(0.854), 0.85, Better::Lower, "x");
        assert_eq!(g.measured, "0.854x");
        assert_eq!(g.verdict, "missed: 0.5% over the goal");
        let g = Goal::check("g", Some(1061.0), 1500.0, Better::Higher, "MB/s");
        assert!(g.verdict.starts_with("missed: 29% short"), "{}", g.verdict);
        let g = Goal::check("g", Some(284.0), 390.6, Better::Lower, "KiB");
        assert_eq!(g.verdict, "met");
        assert_eq!(
            Goal::check("g", None, 1.0, Better::Lower, "").verdict,
            "unknown"
        );
    }

    #[test]
    fn markdown_keeps_text_outside_the_markers() {
        let dir = std::env::temp_dir().join(format!("scribe-bench-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("b.md");
        write_markdown(&p, "first").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, format!("intro\n{s}outro\n")).unwrap();
        write_markdown(&p, "second").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("intro\n"), "{s}");
        assert!(s.ends_with("outro\n"), "{s}");
        assert!(s.contains("second") && !s.contains("first"), "{s}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
