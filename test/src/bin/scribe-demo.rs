//! `make demo`: one container through Scribe on a private containerd, and what it leaves behind:
//! its output, its json-file log, its container.log records and the events containerd saw.

use std::time::Duration;

use scribe_e2e::{check_environment, Containerd, IMAGE, SCRIBE_RUNTIME};

fn section(title: &str) {
    println!("\n==== {title}");
}

fn show_file(path: &std::path::Path) {
    match std::fs::read_to_string(path) {
        Ok(text) => print!("{text}"),
        Err(e) => println!("(cannot read {}: {e})", path.display()),
    }
}

fn main() {
    std::env::set_var("SCRIBE_E2E_RUNTIME", SCRIBE_RUNTIME);
    check_environment();
    let c = Containerd::builder().log_level("info").start();
    println!(
        "private containerd {} at {} (namespace {})",
        c.version(),
        c.address().display(),
        c.namespace()
    );

    let log_root = c.dir().join("logs");
    let options = c.dir().join("scribe.toml");
    let toml = format!(
        "LogRoot = \"{}\"\nLogDriver = \"json-file\"\n[LogOpts]\nmax-size = \"10m\"\nmax-file = \"3\"\n",
        log_root.display()
    );
    if let Err(e) = std::fs::write(&options, toml) {
        panic!("writing {}: {e}", options.display());
    }
    let options_s = options.display().to_string();

    let events = c.events();
    let id = "scribe-demo";
    let script = "echo hello from scribe; echo this goes to stderr >&2; \
                  for i in 1 2 3; do echo line $i; done; exit 3";
    let args = [
        "run",
        "--rm",
        "--runtime",
        SCRIBE_RUNTIME,
        "--runtime-config-path",
        &options_s,
        IMAGE,
        id,
        "sh",
        "-c",
        script,
    ];
    section(&format!("ctr {}", args.join(" ")));
    let out = c.ctr(&args);
    println!(
        "--- stdout\n{}--- stderr\n{}--- exit code: {:?}",
        out.stdout, out.stderr, out.code
    );

    let dir = log_root.join(c.namespace()).join(id);
    section(&format!(
        "json-file log {}",
        dir.join(format!("{id}-json.log")).display()
    ));
    show_file(&dir.join(format!("{id}-json.log")));
    section(&format!(
        "container-log records {}",
        dir.join("container.log").display()
    ));
    show_file(&dir.join("container.log"));

    section("events containerd received (ctr events)");
    let _ = events.wait_topic(id, "/tasks/delete", Duration::from_secs(10));
    for e in events.for_container(id) {
        println!("{}", e.raw);
    }
    section("tearing down");
}
