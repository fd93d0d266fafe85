//! Command-line flags (each also settable as `SCRIBE_BENCH_<NAME>` in the environment).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub const USAGE: &str = "\
scribe-bench: Scribe (io.containerd.scribe.v2) side by side with containerd's Go runc shim
(io.containerd.runc.v2) and the crates.io Rust runc shim, in one private containerd.

usage: scribe-bench [--quick] [options]

  --quick                     smoke run: small counts, 128 MiB relays, no docs written
  --idle N                    idle single-container shims per runtime (20)
  --pod N                     containers in the grouped pod per runtime (10)
  --idle-cpu-secs S           idle CPU window in seconds (30)
  --latency-runs N            `ctr run --rm ... true` runs per runtime (30)
  --concurrent N              containers started at once (20)
  --concurrent-rounds N       rounds of the concurrent start/teardown (5)
  --relay-mib N               MiB relayed per throughput run (1024)
  --relay-reps N              repetitions of each relay case (5)
  --relay-cases LIST          comma-separated subset of the relay cases (all): dd.attached,
                              dd.file, lines.attached, lines.file, lines.attached_stall,
                              lines.json, lines.json_attached, lines.local, lines.fluentd,
                              lines.plugin; without lines.plugin Scribe's options TOML has no
                              PluginDirs (so a build from before plugins can be measured)
  --runtimes LIST             comma-separated subset of scribe,go,rust (all)
  --rust-shim PATH            use this Rust runc shim binary instead of installing one
  --rust-install-timeout S    give `cargo install containerd-runc-shim` this long (900)
  --no-rust-install           never run `cargo install`; use the Rust shim only if cached
  --only LIST                 comma-separated subset of the sections idle,latency,concurrency,
                              relay,reader (all); e.g. `--only relay` for the throughput rows
  --md PATH                   write the results into PATH (between generated-section markers)
  -h, --help                  this text

Every option can also come from the environment: SCRIBE_BENCH_IDLE=5, SCRIBE_BENCH_QUICK=1,
SCRIBE_BENCH_MD=docs/benchmarks.md, ... (a flag wins over the environment).
Reading logs: SCRIBE_BENCH_READER_MIB (size of the rotated json-file logs, 1024; 64 with
--quick); SCRIBE_BENCH_READER_ONLY=<MiB> runs only those rows (no containerd, no root needed);
SCRIBE_CLI_BIN names the scribe binary (default target/release/scribe).
";

#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    pub idle: usize,
    pub pod: usize,
    pub idle_cpu_secs: u64,
    pub latency_runs: usize,
    pub concurrent: usize,
    pub concurrent_rounds: usize,
    pub relay_mib: u64,
    pub relay_reps: usize,
    /// The relay cases to run (`--relay-cases`; all of [`RELAY_CASES`] by default): the fast
    /// paths alone, or a build that predates a driver, without the rest.
    pub relay_cases: Vec<String>,
    pub runtimes: Vec<String>,
    pub rust_shim: Option<PathBuf>,
    pub rust_install_timeout: u64,
    pub no_rust_install: bool,
    pub md: Option<PathBuf>,
    /// The sections to run (`--only`; all of [`SECTIONS`] by default), e.g. only the relay
    /// rows when comparing two builds' throughput.
    pub only: Vec<String>,
    /// The command line, as run (for the report).
    pub command: String,
}

/// Flags that take a value, and the boolean ones.
const VALUED: &[&str] = &[
    "idle",
    "pod",
    "idle-cpu-secs",
    "latency-runs",
    "concurrent",
    "concurrent-rounds",
    "relay-mib",
    "relay-reps",
    "relay-cases",
    "runtimes",
    "rust-shim",
    "rust-install-timeout",
    "md",
    "only",
];
const SWITCHES: &[&str] = &["quick", "no-rust-install"];

/// The relay cases, by the name `--relay-cases` knows them (their row ids without `relay.`).
pub const RELAY_CASES: &[&str] = &[
    "dd.attached",
    "dd.file",
    "lines.attached",
    "lines.file",
    "lines.attached_stall",
    "lines.json",
    "lines.json_attached",
    "lines.local",
    "lines.fluentd",
    "lines.plugin",
];

/// Splits a comma-separated `--flag` value and checks every item is one of `known`; `None`
/// (the flag not given) is all of `known`.
fn subset(flag: &str, value: Option<String>, known: &[&str]) -> Result<Vec<String>> {
    let Some(v) = value else {
        return Ok(known.iter().map(|s| s.to_string()).collect());
    };
    let list: Vec<String> = v
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for s in &list {
        if !known.contains(&s.as_str()) {
            bail!(
                "--{flag} / {}: unknown name {s:?} (known: {})",
                env_name(flag),
                known.join(", ")
            );
        }
    }
    if list.is_empty() {
        bail!("--{flag} / {}: no name given", env_name(flag));
    }
    Ok(list)
}

/// The benchmark's sections, by the name `--only` knows them.
pub const SECTIONS: &[&str] = &["idle", "latency", "concurrency", "relay", "reader"];

fn env_name(flag: &str) -> String {
    format!("SCRIBE_BENCH_{}", flag.replace('-', "_").to_uppercase())
}

impl Config {
    /// Parses `args` (without argv[0]); `Ok(None)` when help was asked for.
    pub fn parse(args: &[String]) -> Result<Option<Config>> {
        let mut given: std::collections::BTreeMap<&'static str, String> = Default::default();
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            if a == "-h" || a == "--help" {
                return Ok(None);
            }
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?} (see --help)");
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if let Some(f) = SWITCHES.iter().find(|f| **f == name) {
                given.insert(f, inline.unwrap_or_else(|| "1".into()));
            } else if let Some(f) = VALUED.iter().find(|f| **f == name) {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .with_context(|| format!("--{name} needs a value"))?
                    }
                };
                given.insert(f, v);
            } else {
                bail!("unknown option --{name} (see --help)");
            }
            i += 1;
        }
        let get = |flag: &'static str| -> Option<String> {
            given
                .get(flag)
                .cloned()
                .or_else(|| std::env::var(env_name(flag)).ok())
                .filter(|v| !v.is_empty())
        };
        let switch = |flag: &'static str| -> Result<bool> {
            match get(flag).as_deref() {
                None | Some("0") | Some("false") | Some("no") => Ok(false),
                Some("1") | Some("true") | Some("yes") => Ok(true),
                Some(v) => bail!("--{flag} / {}: expected 1 or 0, got {v:?}", env_name(flag)),
            }
        };
        let quick = switch("quick")?;
        let num = |flag: &'static str, full: u64, quick_v: u64| -> Result<u64> {
            match get(flag) {
                Some(v) => v
                    .parse::<u64>()
                    .with_context(|| format!("--{flag} / {}: not a number: {v:?}", env_name(flag))),
                None => Ok(if quick { quick_v } else { full }),
            }
        };
        let runtimes: Vec<String> = get("runtimes")
            .unwrap_or_else(|| "scribe,go,rust".into())
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for r in &runtimes {
            if !["scribe", "go", "rust"].contains(&r.as_str()) {
                bail!("--runtimes: unknown runtime {r:?} (known: scribe, go, rust)");
            }
        }
        if !runtimes.iter().any(|r| r == "scribe") {
            bail!("--runtimes must include scribe (every figure is a ratio to it)");
        }
        let only = subset("only", get("only"), SECTIONS)?;
        let relay_cases = subset("relay-cases", get("relay-cases"), RELAY_CASES)?;
        let cfg = Config {
            quick,
            idle: num("idle", 20, 3)? as usize,
            pod: num("pod", 10, 3)? as usize,
            idle_cpu_secs: num("idle-cpu-secs", 30, 5)?,
            latency_runs: num("latency-runs", 30, 5)? as usize,
            concurrent: num("concurrent", 20, 5)? as usize,
            concurrent_rounds: num("concurrent-rounds", 5, 1)? as usize,
            relay_mib: num("relay-mib", 1024, 128)?,
            relay_reps: num("relay-reps", 5, 1)? as usize,
            relay_cases,
            runtimes,
            rust_shim: get("rust-shim").map(PathBuf::from),
            rust_install_timeout: num("rust-install-timeout", 900, 900)?,
            // A smoke run never spends minutes compiling a peer.
            no_rust_install: switch("no-rust-install")? || quick,
            md: get("md").map(PathBuf::from),
            only,
            command: std::iter::once("scribe-bench".to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
        };
        if cfg.relay_mib == 0 || cfg.latency_runs == 0 || cfg.relay_reps == 0 {
            bail!("--relay-mib, --latency-runs and --relay-reps must be at least 1");
        }
        Ok(Some(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Config>> {
        Config::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn only_defaults_to_every_section() {
        std::env::remove_var("SCRIBE_BENCH_ONLY");
        let c = parse(&[]).unwrap().unwrap();
        assert_eq!(c.only, SECTIONS);
    }

    #[test]
    fn only_takes_a_list_and_refuses_unknown_sections() {
        let c = parse(&["--only", "relay"]).unwrap().unwrap();
        assert_eq!(c.only, ["relay"]);
        let c = parse(&["--only=relay, reader"]).unwrap().unwrap();
        assert_eq!(c.only, ["relay", "reader"]);
        assert!(parse(&["--only", "throughput"]).is_err());
        assert!(parse(&["--only", ","]).is_err());
    }

    #[test]
    fn relay_cases_take_a_list() {
        let c = parse(&["--relay-cases", "dd.attached,lines.file"])
            .unwrap()
            .unwrap();
        assert_eq!(c.relay_cases, ["dd.attached", "lines.file"]);
        assert!(parse(&["--relay-cases", "relay.dd.attached"]).is_err());
    }
}
