//! The environment of every program the shim starts: the OCI runtime (every runc command,
//! including the `delete` command's) and the logging binaries.
//!
//! The shim inherits containerd's environment. When containerd runs as a systemd service that
//! environment carries systemd's per-service variables, which speak for containerd alone:
//! `NOTIFY_SOCKET` makes `runc create`/`run` hand the socket to the container and wait for its
//! `READY=1` (a normal container never sends it, so Start hangs), `LISTEN_FDS`/`LISTEN_PID`
//! describe sockets passed to containerd, `WATCHDOG_*` ask containerd for keep-alives. They are
//! dropped here, in one place, so no program the shim starts sees them.
//!
//! What is kept follows containerd's Go shim: the runtime gets the inherited environment
//! (`PATH`, `TMPDIR`, `XDG_RUNTIME_DIR`, proxies, ...) minus systemd's variables (go-runc drops
//! `NOTIFY_SOCKET`; the rest are dropped for the same reason); a logging binary gets
//! `CONTAINER_ID` and `CONTAINER_NAMESPACE` and nothing inherited (containerd's
//! `NewBinaryCmd` starts from an empty environment), plus its URI's own `env.` entries, which the
//! caller adds.

use std::ffi::{OsStr, OsString};

/// Variables systemd sets for a service (systemd.exec(5), sd_notify(3), sd_listen_fds(3),
/// sd_watchdog_enabled(3)): they describe the service's own process and never pass to its
/// children.
pub const SYSTEMD_SERVICE_VARS: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "INVOCATION_ID",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "SYSTEMD_EXEC_PID",
    "MAINPID",
    "MANAGERPID",
    "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE",
    "CREDENTIALS_DIRECTORY",
    "TRIGGER_UNIT",
    "TRIGGER_PATH",
    "TRIGGER_TIMER_REALTIME_USEC",
    "TRIGGER_TIMER_MONOTONIC_USEC",
];

/// The program an environment is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child<'a> {
    /// The OCI runtime (runc, crun): any of its commands.
    Runtime,
    /// A `binary://` or `binary-v2://` logging binary of one container.
    Logger {
        /// The container's id, as `CONTAINER_ID`.
        container_id: &'a str,
        /// The container's namespace, as `CONTAINER_NAMESPACE`.
        namespace: &'a str,
    },
}

/// True for a variable systemd set for the service the shim descends from.
pub fn is_systemd_service_var(name: &OsStr) -> bool {
    SYSTEMD_SERVICE_VARS.iter().any(|v| OsStr::new(v) == name)
}

/// The complete environment for `child`, from `inherited` (the shim's own environment, i.e.
/// `std::env::vars_os()`). Callers clear the command's environment and set exactly this.
pub fn child_env(
    child: Child<'_>,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    match child {
        Child::Runtime => inherited
            .into_iter()
            .filter(|(k, _)| !is_systemd_service_var(k))
            .collect(),
        Child::Logger {
            container_id,
            namespace,
        } => vec![
            ("CONTAINER_ID".into(), container_id.into()),
            ("CONTAINER_NAMESPACE".into(), namespace.into()),
        ],
    }
}

/// `child_env` over the shim's own environment.
pub fn from_process(child: Child<'_>) -> Vec<(OsString, OsString)> {
    child_env(child, std::env::vars_os())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    /// containerd's environment as systemd 252 starts `containerd.service` (Type=notify), plus
    /// socket activation and a watchdog, and what a user's unit or drop-in commonly adds.
    fn containerd_under_systemd() -> Vec<(OsString, OsString)> {
        pairs(&[
            ("LANG", "C.UTF-8"),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("TMPDIR", "/var/tmp/ctd"),
            ("XDG_RUNTIME_DIR", "/run/user/0"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PID", "812"),
            ("LISTEN_FDNAMES", "containerd.socket"),
            ("INVOCATION_ID", "0b1f2e3d4c5b6a79887766554433221"),
            ("WATCHDOG_USEC", "30000000"),
            ("WATCHDOG_PID", "812"),
            ("JOURNAL_STREAM", "8:23456"),
            ("SYSTEMD_EXEC_PID", "812"),
            (
                "MEMORY_PRESSURE_WATCH",
                "/sys/fs/cgroup/system.slice/containerd.service/memory.pressure",
            ),
            ("MEMORY_PRESSURE_WRITE", "c29tZSAyMDAwMDAgMjAwMDAwMAA="),
        ])
    }

    #[test]
    fn the_runtime_keeps_everything_but_systemds_variables() {
        let env = child_env(Child::Runtime, containerd_under_systemd());
        assert_eq!(
            env,
            pairs(&[
                ("LANG", "C.UTF-8"),
                (
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                ),
                ("TMPDIR", "/var/tmp/ctd"),
                ("XDG_RUNTIME_DIR", "/run/user/0"),
                ("HTTPS_PROXY", "http://proxy:3128"),
            ])
        );
    }

    #[test]
    fn every_listed_variable_is_dropped_and_only_by_exact_name() {
        for name in SYSTEMD_SERVICE_VARS {
            let env = child_env(Child::Runtime, pairs(&[(name, "x"), ("PATH", "/usr/bin")]));
            assert_eq!(env, pairs(&[("PATH", "/usr/bin")]), "{name} passed through");
        }
        // Look-alikes are someone else's variables: kept.
        let kept = pairs(&[
            ("NOTIFY_SOCKET_X", "a"),
            ("MY_LISTEN_FDS", "b"),
            ("notify_socket", "c"),
        ]);
        assert_eq!(child_env(Child::Runtime, kept.clone()), kept);
    }

    #[test]
    fn a_logging_binary_gets_its_container_and_nothing_inherited() {
        let env = child_env(
            Child::Logger {
                container_id: "c1",
                namespace: "k8s.io",
            },
            containerd_under_systemd(),
        );
        assert_eq!(
            env,
            pairs(&[("CONTAINER_ID", "c1"), ("CONTAINER_NAMESPACE", "k8s.io")])
        );
    }
}
