//! Checks of the harness itself: environment, image, teardown.

use scribe_e2e::*;
use std::time::Duration;

#[test]
fn environment_is_complete() {
    check_environment();
    let c = Containerd::start();
    eprintln!(
        "containerd: {} ({}), runtime under test: {}",
        c.version(),
        c.bin_dir().display(),
        c.runtime()
    );
    c.ctr_ok(&["version"]);
}

#[test]
fn image_build_is_deterministic() {
    let dir = std::env::temp_dir().join(format!("scribe-e2e-img-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = workspace_dir().join("test/images/build-image.sh");
    let mut digests = Vec::new();
    for n in 0..2 {
        let out = dir.join(format!("img{n}.tar"));
        let o = std::process::Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        digests.push(std::fs::read(&out).unwrap());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(digests[0] == digests[1], "two builds differ");
}

#[test]
fn image_runs_with_default_runtime_and_has_applets() {
    let c = Containerd::start();
    let o = c.ctr(&[
        "run", "--rm", IMAGE, "applets", "sh", "-c",
        "for a in sh echo cat sleep true false ls head seq yes dd wc stty id env kill ps mkdir tr printf; do command -v $a >/dev/null || echo missing $a; done; \
         echo PATH=$PATH; id -un; ls -d /proc /sys /dev /tmp /etc /root",
    ]);
    assert!(o.success(), "{o}");
    assert!(!o.stdout.contains("missing"), "{o}");
    assert!(
        o.stdout
            .contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{o}"
    );
    assert!(o.stdout.contains("root\n"), "{o}");
}

#[test]
fn drop_cleans_up_running_containers() {
    let (dir, ns, shim, pid);
    {
        let c = Containerd::start();
        c.ctr_ok(&c.run_args(&["-d", IMAGE, "left", "sleep", "1000"]));
        assert!(c.wait_task_status("left", "RUNNING", Duration::from_secs(30)));
        dir = c.dir().to_path_buf();
        ns = c.namespace().to_string();
        shim = c.shim_pid("left").expect("shim");
        pid = c.task("left").unwrap().pid as i32;
        assert!(!c.mounts().is_empty());
    }
    assert!(!pid_alive(shim), "shim survived drop");
    assert!(!pid_alive(pid), "container survived drop");
    assert!(
        mounts_under(&dir).is_empty(),
        "mounts left: {:?}",
        mounts_under(&dir)
    );
    assert!(!dir.exists(), "temp dir left");
    assert!(
        !std::path::Path::new("/run/containerd/runc")
            .join(&ns)
            .exists(),
        "runc state left"
    );
}

#[test]
fn drop_cleans_up_after_stopped_containerd_and_killed_shim() {
    let (dir, pid);
    {
        let mut c = Containerd::start();
        c.ctr_ok(&c.run_args(&["-d", IMAGE, "left2", "sleep", "1000"]));
        assert!(c.wait_task_status("left2", "RUNNING", Duration::from_secs(30)));
        pid = c.task("left2").unwrap().pid as i32;
        dir = c.dir().to_path_buf();
        c.stop();
        c.kill_shim("left2");
    }
    assert!(!pid_alive(pid), "container survived drop");
    assert!(
        mounts_under(&dir).is_empty(),
        "mounts left: {:?}",
        mounts_under(&dir)
    );
    assert!(!dir.exists(), "temp dir left");
}
