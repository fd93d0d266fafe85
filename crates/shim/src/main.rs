//! containerd-shim-scribe-v2: a containerd shim v2 whose output and lifecycle are records.

mod announce;
mod cgroups;
mod cleanup;
mod container;
mod daemon;
mod driverreport;
mod error;
mod exit;
mod flags;
mod info;
mod logconfig;
mod logger;
mod mount;
mod oom;
mod options;
mod process;
mod proto;
mod reaper;
mod records;
mod retention;
mod runtime;
mod socket;
mod spec;
mod start;
mod stdio;
mod task;

use std::process::ExitCode;

fn main() -> ExitCode {
    let flags = match flags::Flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("containerd-shim-scribe-v2: {e}");
            return ExitCode::from(2);
        }
    };
    if flags.version {
        println!("containerd-shim-scribe-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!(
            "  Revision: {}",
            option_env!("SCRIBE_REVISION").unwrap_or("unknown")
        );
        return ExitCode::SUCCESS;
    }
    let result = if flags.info {
        info::run()
    } else if std::env::var_os(start::DAEMON_ENV).is_some() {
        daemon::run(&flags)
    } else {
        match flags.action.as_str() {
            "start" => start::run(&flags),
            "delete" => cleanup::run(&flags),
            "" => Err("missing action: start or delete".to_string()),
            other => Err(format!(
                "unknown action {other:?}: expected start or delete"
            )),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-scribe-v2: {e}");
            ExitCode::FAILURE
        }
    }
}
