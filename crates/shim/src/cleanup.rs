//! The `delete` command: clean up after a shim that died (or at containerd's boot).
//!
//! containerd runs it with the bundle as working directory and gives it 5 seconds. It must
//! force-delete the container in the runtime (killing what is left), unmount the rootfs, and
//! print a protobuf `DeleteResponse` on stdout.
//!
//! It also writes the records the dead shim could not, when the runtime still had the container
//! (containerd also runs this command after a shim that exited normally, e.g. after a failed
//! Create, when there is nothing to record): when the container has a `container.log`
//! (and records are on for it, as its saved settings and annotations say), the init's `exit`
//! (137, with an `error` saying the shim was gone) unless one is already there, then `delete`;
//! and a line in `runtime.log`. Then the log retention of a delete applies.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use scribe_io::childenv::{self, Child};

use scribe_events::{
    container_log_dir, ContainerEvent, ContainerLog, ContainerRecord, Level, RuntimeLog,
    RuntimeRecord, CONTAINER_LOG_FILE, RUNTIME_LOG_FILE,
};

use crate::flags::Flags;
use crate::logconfig::{self, SpecInfo};
use crate::options::Settings;

/// The exit status reported for a container whose shim died: it was killed.
const KILLED: u32 = 128 + 9;

/// Removes the shim's socket when nobody serves it any more (a group shim that still serves
/// other containers keeps it).
fn remove_dead_socket(bundle: &std::path::Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = address.trim().trim_start_matches("unix://");
    if !path.is_empty() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// What the dead shim left at the end of `container.log`: (the init's exit is there, the
/// delete is there). Reads only the last 64 KiB.
fn last_records(mut f: std::fs::File) -> (bool, bool) {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))
        .is_err()
        || f.read_to_end(&mut tail).is_err()
    {
        return (false, false);
    }
    let text = String::from_utf8_lossy(&tail);
    let last = text
        .lines()
        .rev()
        .find_map(|l| ContainerRecord::from_json(l).ok());
    match last {
        Some(r) if r.event == ContainerEvent::Delete => (true, true),
        Some(r) => (
            r.event == ContainerEvent::Exit && r.exec_id.is_none(),
            false,
        ),
        None => (false, false),
    }
}

/// Writes the records a SIGKILLed (or crashed) shim could not: see the module docs. Only for a
/// container that has a log directory: one whose Create never got that far gets none.
fn record_shim_gone(
    flags: &Flags,
    bundle: &std::path::Path,
    settings: &Settings,
    pid: u32,
    exited_at: SystemTime,
) {
    let id = flags.id.as_str();
    let (container_log, runtime_log, root) =
        match logconfig::resolve(settings, &SpecInfo::read(bundle)) {
            Ok(l) => (l.container_log, l.runtime_log, l.root),
            Err(_) => (
                settings.container_log,
                settings.runtime_log,
                settings.log_root.clone().into(),
            ),
        };
    if container_log_dir(&root, &flags.namespace, id).is_err() {
        return;
    }
    let gone =
        "the shim was gone (killed or crashed): the delete command force-deleted the container";
    let open = |name| crate::retention::open_record_file(&root, &flags.namespace, id, name);
    // A container whose Create never got as far as its records (or a planted link) gets none.
    let records = if container_log {
        open(CONTAINER_LOG_FILE).ok()
    } else {
        None
    };
    if let Some(file) = records {
        let (has_exit, has_delete) = last_records(file);
        if !has_delete {
            match ContainerLog::open(&root, &flags.namespace, id) {
                Ok(log) => {
                    let mut exit = ContainerRecord::exit(id, None, pid, KILLED as i32, exited_at);
                    exit.error = Some(gone.to_string());
                    let delete = ContainerRecord::delete(id, Some(pid), Some(KILLED as i32));
                    let wanted = if has_exit {
                        vec![delete]
                    } else {
                        vec![exit, delete]
                    };
                    for rec in wanted {
                        if let Err(e) = log.append(&rec) {
                            eprintln!(
                                "container {id}: writing the {} record: {e}",
                                rec.event.as_str()
                            );
                        }
                    }
                }
                Err(e) => eprintln!("container {id}: {e}"),
            }
        }
    }
    if runtime_log && open(RUNTIME_LOG_FILE).is_ok() {
        let rec = RuntimeRecord::new(
            Level::Warn,
            "shim",
            format!("{gone}; recorded exit status {KILLED} by the delete command"),
        )
        .with_pid(std::process::id())
        .with_field("container_id", id);
        if let Err(e) = RuntimeLog::open(&root, &flags.namespace, id).and_then(|l| l.append(&rec)) {
            eprintln!("container {id}: {e}");
        }
    }
}

/// Runs the `delete` command.
pub fn run(flags: &Flags) -> Result<(), String> {
    let bundle = crate::start::bundle_dir(flags)?;
    crate::task::validate_id(&flags.id)?;
    let settings = Settings::load(&bundle)?.unwrap_or_else(|| Settings::defaults(&flags.namespace));
    let mut cmd = Command::new(&settings.binary_name);
    cmd.env_clear()
        .envs(childenv::from_process(Child::Runtime))
        .arg("--root")
        .arg(&settings.root)
        .arg("--log")
        .arg(bundle.join("log.json"))
        .args(["--log-format", "json"]);
    if settings.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    cmd.args(["delete", "--force", &flags.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // A container the runtime no longer knows is fine: there is nothing left to delete (and
    // nothing to record: its Create failed, or its shim deleted it).
    let mut runtime_had_it = false;
    match cmd.status() {
        Ok(s) if s.success() => runtime_had_it = true,
        Ok(s) => {
            eprintln!(
                "{} delete --force {}: exited with {s} (see {})",
                settings.binary_name,
                flags.id,
                bundle.join("log.json").display()
            );
        }
        Err(e) => eprintln!("running {}: {e}", settings.binary_name),
    }
    crate::mount::unmount_all(&bundle.join("rootfs"))?;
    remove_dead_socket(&bundle);
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let exited_at = SystemTime::now();
    if runtime_had_it {
        record_shim_gone(flags, &bundle, &settings, pid, exited_at);
    }
    crate::retention::on_delete(&settings, &flags.namespace, &flags.id);
    let now = exited_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let resp = DeleteResponse {
        pid,
        exit_status: KILLED,
        exited_at: MessageField::some(Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = resp
        .write_to_bytes()
        .map_err(|e| format!("encoding DeleteResponse: {e}"))?;
    let mut out = std::io::stdout();
    out.write_all(&bytes)
        .and_then(|_| out.flush())
        .map_err(|e| format!("writing DeleteResponse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> std::fs::File {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn what_the_dead_shim_left() {
        let start = ContainerRecord::start("c", 7, None, None)
            .to_json()
            .unwrap();
        let exit = ContainerRecord::exit("c", None, 7, 1, SystemTime::now())
            .to_json()
            .unwrap();
        let exec_exit = ContainerRecord::exit("c", Some("e".into()), 8, 0, SystemTime::now())
            .to_json()
            .unwrap();
        let delete = ContainerRecord::delete("c", Some(7), Some(1))
            .to_json()
            .unwrap();
        assert_eq!(
            last_records(file_with(&format!("{start}\n"))),
            (false, false)
        );
        assert_eq!(
            last_records(file_with(&format!("{start}\n{exit}\n"))),
            (true, false)
        );
        assert_eq!(
            last_records(file_with(&format!("{start}\n{exec_exit}\n"))),
            (false, false)
        );
        assert_eq!(
            last_records(file_with(&format!("{start}\n{exit}\n{delete}\n"))),
            (true, true)
        );
        assert_eq!(last_records(file_with("")), (false, false));
    }

    #[test]
    fn records_are_not_read_through_a_planted_link() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join(CONTAINER_LOG_FILE), b"{}\n").unwrap();
        std::fs::create_dir_all(tmp.path().join("root/ns")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("root/ns/c")).unwrap();
        let e = crate::retention::open_record_file(
            &tmp.path().join("root"),
            "ns",
            "c",
            CONTAINER_LOG_FILE,
        )
        .unwrap_err();
        assert!(e.contains("root/ns/c"), "{e}");
    }
}
