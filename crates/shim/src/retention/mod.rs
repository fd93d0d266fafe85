//! Log retention: what happens to a container's log directories once the container is deleted.
//!
//! A deleted container's directories (`<LogRoot>/<ns>/<id>/` and, with `JsonFileRoot`,
//! `<JsonFileRoot>/<ns>/<id>/`) are removed at delete when `LogRetention` is 0. Otherwise the
//! delete leaves a marker file, [`MARKER`], in the `LogRoot` directory (its mtime is the time of
//! the delete), and the next shim start prunes the namespace once: marked directories older than
//! `LogRetention` go, then, while the namespace's directories take more than
//! `LogRetentionMaxSize`, the oldest marked ones. A directory without the marker (a running
//! container's, or one from before retention existed) is never removed; a Create removes the
//! marker of a reused id. A directory marked after the prune began (by a container of the
//! pruning shim itself, say) counts towards the size but is left to the next start.
//!
//! Nothing here follows a symbolic link below the admin's root: every directory and file is
//! reached through [`scribe_safefs::SafeDir`] (directories opened relative to their parent's fd
//! with `O_NOFOLLOW | O_DIRECTORY`, entries examined with `fstatat(AT_SYMLINK_NOFOLLOW)` and
//! removed with `unlinkat`: a link is removed, never followed; the marker and the lock file are
//! regular files opened `O_NOFOLLOW`). A marked directory is renamed to `.removing-<id>` under
//! a namespace lock before it is emptied, so a Create reusing the id at that moment gets a fresh
//! directory rather than losing its files; a removal cut short (the shim killed) is finished by
//! the next prune.
//!
//! Failure policy: retention never fails an operation; what it cannot do is logged with the path
//! and the error, and the next shim start tries again.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::fcntl::Flock;
use scribe_safefs::{self as safefs, Kind, SafeDir};

use crate::options::Settings;

/// The file a delete leaves in a container's `LogRoot` directory; its mtime is when.
pub const MARKER: &str = ".scribe-deleted";
/// The lock file of a namespace's directory, held while marks are checked or removed.
const LOCK: &str = ".scribe-retention.lock";
/// Prefix of a directory being removed.
const REMOVING: &str = ".removing-";
/// Directory depth below a container's directory that removal and sizing go to (the shim
/// writes none; anything deeper was planted and is left alone).
const MAX_DEPTH: usize = 8;

/// Parses a retention duration: `0`, or numbers with units `s`, `m`, `h`, `d` (`24h`, `1h30m`,
/// `7d`); whole seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err("empty duration: expected e.g. 24h, 30m, 7d or 0".into());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "expected a number at {rest:?} (e.g. 24h, 30m, 7d or 0)"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|e| format!("number {:?}: {e}", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit = match rest.bytes().next() {
            Some(b's') => 1,
            Some(b'm') => 60,
            Some(b'h') => 3600,
            Some(b'd') => 86_400,
            _ => return Err(format!("number {n} without a unit s, m, h or d")),
        };
        rest = &rest[1..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| "duration too large".to_string())?;
    }
    Ok(total)
}

/// Parses a size: bytes, or a number with `k`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` (powers of
/// 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024); case-insensitive, fractions allowed
/// (`1.5GiB`); `0` means no cap.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a size such as 1GiB, 500MB or 0, got {t:?}"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("size {t:?} out of range"));
    }
    Ok(v as u64)
}

/// Opens the admin's root (`LogRoot`, `JsonFileRoot`; links in the admin's own path are the
/// admin's choice), then `names` below it without following links.
fn open_under(root: &Path, names: &[&str]) -> safefs::Result<SafeDir> {
    let mut dir = SafeDir::open_root(root, false, 0)?;
    for name in names {
        dir = dir.open_dir(name)?;
    }
    Ok(dir)
}

/// The namespace directories of `settings`: `LogRoot/<ns>` and, when different,
/// `JsonFileRoot/<ns>` (`None` where it does not exist).
fn namespace_dirs(settings: &Settings, namespace: &str) -> (Option<SafeDir>, Option<SafeDir>) {
    let open = |root: &str| match open_under(Path::new(root), &[namespace]) {
        Ok(d) => Some(d),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            log::warn!("log retention: {e}");
            None
        }
    };
    let logs = open(&settings.log_root);
    let json = (!settings.json_file_root.is_empty()
        && settings.json_file_root != settings.log_root)
        .then(|| open(&settings.json_file_root))
        .flatten();
    (logs, json)
}

/// Holds the namespace's lock file (`flock`, released on drop).
fn lock(ns_dir: &SafeDir) -> Result<Flock<File>, String> {
    ns_dir.lock_file(LOCK, 0o600).map_err(|e| e.to_string())
}

/// At Create: the container's directory is in use (again): a marker left by an earlier
/// container with the same id must not let a prune remove it.
pub fn on_create(settings: &Settings, namespace: &str, id: &str) {
    let (Some(ns_dir), _) = namespace_dirs(settings, namespace) else {
        return;
    };
    let _lock = lock(&ns_dir)
        .map_err(|e| log::warn!(container = id, error:% = e; "log retention: unmarking unlocked"))
        .ok();
    unmark(&ns_dir, id);
}

fn unmark(ns_dir: &SafeDir, id: &str) {
    let Ok(dir) = ns_dir.open_dir(id) else {
        return;
    };
    match dir.remove(MARKER) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => log::warn!(container = id, error:% = e; "log retention: unmarking"),
    }
}

/// At delete (by the shim, or by the `delete` command after a crash): removes the container's
/// log directories when `LogRetention` is 0, else marks them deleted now.
pub fn on_delete(settings: &Settings, namespace: &str, id: &str) {
    if scribe_events::check_component("container id", id).is_err() {
        return;
    }
    let (logs, json) = namespace_dirs(settings, namespace);
    if settings.log_retention_secs == 0 {
        for ns_dir in [logs, json].into_iter().flatten() {
            if ns_dir.stat_nofollow(id).is_err() {
                continue;
            }
            match ns_dir.remove_tree(id, MAX_DEPTH) {
                Ok(()) => log::debug!(
                    container = id;
                    "log retention 0: removed {}", ns_dir.path().join(id).display()
                ),
                Err(e) => log::warn!(
                    container = id, error:% = e;
                    "log retention: removing the container's logs"
                ),
            }
        }
        return;
    }
    // The mark lives in the LogRoot directory; a container with only a json-file log under
    // JsonFileRoot (records off) gets an empty LogRoot directory to hold it.
    let has_json = json.as_ref().is_some_and(|j| j.stat_nofollow(id).is_ok());
    let dir = match logs.as_ref().map(|l| l.open_dir(id)) {
        Some(Ok(d)) => d,
        _ if has_json => match marker_dir(settings, namespace, id) {
            Ok(d) => d,
            Err(e) => {
                log::warn!(container = id, error:% = e; "log retention: no directory for the mark");
                return;
            }
        },
        _ => return,
    };
    let written = dir
        .replace_file(MARKER, 0o644)
        .map_err(std::io::Error::from)
        .and_then(|mut f| writeln!(f, "{}", scribe_events::Timestamp::now()));
    if let Err(e) = written {
        log::warn!(container = id, error:% = e; "log retention: marking");
    }
}

/// Opens `<root>/<namespace>/<id>/<name>` read-only, walking from directory fds and refusing
/// a symbolic link at the namespace, the container directory or the file: for the `delete`
/// command, which reads what a dead shim left.
pub fn open_record_file(
    root: &Path,
    namespace: &str,
    id: &str,
    name: &str,
) -> Result<File, String> {
    open_under(root, &[namespace, id])
        .and_then(|dir| dir.open_read(name))
        .map_err(|e| e.to_string())
}

/// Creates (0755, not following links) `<LogRoot>/<ns>/<id>` as far as missing, and opens it.
fn marker_dir(settings: &Settings, namespace: &str, id: &str) -> Result<SafeDir, String> {
    SafeDir::open_root(Path::new(&settings.log_root), false, 0)
        .and_then(|root| root.create_dir_all([namespace, id], 0o755))
        .map_err(|e| e.to_string())
}

/// One container directory of a namespace, as a prune sees it.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    name: String,
    size: u64,
    /// When it was deleted (the marker's mtime); `None`: in use, never removed.
    deleted: Option<SystemTime>,
}

/// Which entries go: deleted longer than `retention` ago, then the oldest deleted while the
/// total is over `max_size` (0: no cap). Running ones count towards the total but never go.
fn choose(entries: &[Entry], now: SystemTime, retention: Duration, max_size: u64) -> Vec<String> {
    let mut total: u64 = entries.iter().map(|e| e.size).sum();
    let mut deleted: Vec<&Entry> = entries.iter().filter(|e| e.deleted.is_some()).collect();
    deleted.sort_by_key(|e| e.deleted);
    let mut out = Vec::new();
    for e in deleted {
        let age = e
            .deleted
            .and_then(|d| now.duration_since(d).ok())
            .unwrap_or_default();
        let expired = age >= retention;
        let over = max_size > 0 && total > max_size;
        if expired || over {
            total = total.saturating_sub(e.size);
            out.push(e.name.clone());
        }
    }
    out
}

/// What a prune did, for the shim's log.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Directories removed.
    pub removed: usize,
    /// Bytes they held.
    pub bytes: u64,
}

/// Once per shim start: removes the namespace's deleted directories that are past
/// `LogRetention` or, oldest first, beyond `LogRetentionMaxSize`.
pub fn prune(settings: &Settings, namespace: &str) -> Pruned {
    let mut done = Pruned::default();
    // What is deleted from now on (by this shim's own containers, too) is the next start's.
    let started = SystemTime::now();
    if scribe_events::check_component("namespace", namespace).is_err() {
        return done;
    }
    let (Some(logs), json) = namespace_dirs(settings, namespace) else {
        return done;
    };
    // Names that are not UTF-8 are no container's (ids are checked at Create): left alone.
    let utf8 = |names: Vec<std::ffi::OsString>| -> Vec<String> {
        names
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect()
    };
    let names = match logs.entries() {
        Ok(n) => utf8(n),
        Err(e) => {
            log::warn!("log retention: {e}");
            return done;
        }
    };
    // Removals cut short earlier are finished first.
    let json_names = json
        .as_ref()
        .and_then(|j| j.entries().ok())
        .map(utf8)
        .unwrap_or_default();
    for (ns_dir, list) in [(Some(&logs), &names), (json.as_ref(), &json_names)] {
        let Some(ns_dir) = ns_dir else { continue };
        for n in list.iter().filter(|n| n.starts_with(REMOVING)) {
            if let Err(e) = ns_dir.remove_tree(n, MAX_DEPTH) {
                log::warn!(error:% = e; "log retention: finishing an earlier removal");
            }
        }
    }
    let entries: Vec<Entry> = names
        .iter()
        .filter(|n| !n.starts_with('.'))
        .filter_map(|n| {
            if logs.stat_nofollow(n).ok()?.kind != Kind::Dir {
                return None;
            }
            let deleted = logs
                .open_dir(n)
                .ok()
                .and_then(|d| d.stat_nofollow(MARKER).ok())
                .filter(|st| st.kind == Kind::File)
                .map(|st| st.mtime)
                .filter(|mtime| *mtime <= started);
            let size = logs.tree_size(n, MAX_DEPTH)
                + json.as_ref().map_or(0, |j| j.tree_size(n, MAX_DEPTH));
            Some(Entry {
                name: n.clone(),
                size,
                deleted,
            })
        })
        .collect();
    let victims = choose(
        &entries,
        started,
        Duration::from_secs(settings.log_retention_secs),
        settings.log_retention_max_size,
    );
    for name in victims {
        let removing = format!("{REMOVING}{name}");
        // Under the lock: the mark is still there (no Create took the id back), and the
        // directories move out of the way; they are emptied after the lock is released.
        {
            let _lock = match lock(&logs) {
                Ok(l) => l,
                Err(e) => {
                    log::warn!(error:% = e; "log retention: not pruning");
                    return done;
                }
            };
            let marked = logs
                .open_dir(&name)
                .ok()
                .is_some_and(|d| d.stat_nofollow(MARKER).is_ok());
            if !marked || rename(&logs, &name, &removing).is_err() {
                continue;
            }
            if let Some(j) = json.as_ref().filter(|j| j.stat_nofollow(&name).is_ok()) {
                if let Err(e) = rename(j, &name, &removing) {
                    log::warn!(container = name.as_str(), error:% = e; "log retention: moving json-file logs");
                }
            }
        }
        let mut ok = true;
        for ns_dir in [Some(&logs), json.as_ref()].into_iter().flatten() {
            if ns_dir.stat_nofollow(&removing).is_err() {
                continue;
            }
            if let Err(e) = ns_dir.remove_tree(&removing, MAX_DEPTH) {
                ok = false;
                log::warn!(container = name.as_str(), error:% = e; "log retention: removing logs");
            }
        }
        if ok {
            done.removed += 1;
            done.bytes += entries
                .iter()
                .find(|e| e.name == name)
                .map_or(0, |e| e.size);
        }
    }
    done
}

/// Renames `from` to `to` in one directory.
fn rename(dir: &SafeDir, from: &str, to: &str) -> Result<(), String> {
    dir.rename(from, to).map_err(|e| format!("{e} to {to}"))
}

#[cfg(test)]
mod tests;
