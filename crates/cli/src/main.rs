//! `scribe`: read a container's logs and records back on the node.
//!
//! - `scribe logs [OPTIONS] CONTAINER`: the container's json-file or `local` log, or its
//!   dual-logging cache (rotated and gzipped files included), as `docker logs` prints it, to the
//!   nanosecond;
//! - `scribe records [OPTIONS] CONTAINER`: its `container.log` (and `runtime.log`) records;
//! - `scribe plugin`: Scribe as dockerd's log driver ([`plugin`]).
//!
//! The reading is [`scribe_io::reader`]; this crate only parses options and prints.

mod args;
mod lifecycle;
mod logs;
mod output;
mod plugin;
mod records;

use std::process::ExitCode;

const USAGE: &str = "\
usage: scribe logs [OPTIONS] CONTAINER
       scribe records [OPTIONS] CONTAINER
       scribe plugin [--socket PATH] [--log-root DIR] [-n NS] [--driver json-file|local]
                     [--log-opt KEY=VALUE ...]

Options (both):
  -n, --namespace NS       containerd namespace (default: default)
      --log-root DIR       the shim's LogRoot (default: /var/log/scribe)
      --since TIME         from TIME: RFC 3339 (2024-03-21T10:00:00.5Z), Unix time
                           (1711015200.5) or a duration back from now (10m, 1h30m)
      --until TIME         up to TIME (same forms)
      --tail N|all         only the last N lines/records
  -f, --follow             keep printing until the container is deleted (or Ctrl-C)
logs:
      --json-file-root DIR the shim's JsonFileRoot (default: the log root)
      --source S           json-file, local, cache (the dual-logging cache of a
                           fluentd or plugin container) or plugin (asked through
                           the plugin's ReadLogs); default: the first the container has
  -t, --timestamps         print each line's time before it
      --stream S           stdout or stderr only
      --format raw|json    json: one Docker json-file object a line
records:
      --runtime            also runtime.log
      --event E[,E...]     only these events (create, start, exit, oom, delete, ...)
plugin (serve Docker's log-driver plugin protocol, so dockerd logs through Scribe):
      --socket PATH        default /run/docker/plugins/scribe.sock (dockerd's name: scribe)
      --log-root DIR       where logs and records go (default: /var/log/scribe)
  -n, --namespace NS       the directory below the log root (default: docker)
      --driver D           json-file (default) or local
      --log-opt KEY=VALUE  a default log option (max-size, max-file, compress, tag);
                           a container's own --log-opt wins
";

fn main() -> ExitCode {
    // A closed pipe (`scribe logs c | head`) ends the program quietly, as for other tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc_sigpipe_default();
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match argv.split_first() {
        Some((c, rest)) if c == "logs" => (args::Command::Logs, rest),
        Some((c, rest)) if c == "records" => (args::Command::Records, rest),
        Some((c, rest)) if c == "plugin" => {
            if rest.iter().any(|a| a == "-h" || a == "--help") {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            return match plugin::run(rest) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("scribe plugin: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some((c, _)) if c == "-h" || c == "--help" || c == "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let a = match args::parse(cmd, rest, std::time::SystemTime::now()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("scribe: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        args::Command::Logs => logs::run(&a),
        args::Command::Records => records::run(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scribe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resets SIGPIPE to its default action (Rust ignores it, which turns a closed pipe into write
/// errors on every line).
unsafe fn libc_sigpipe_default() {
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
}
