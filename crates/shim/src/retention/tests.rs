//! Unit tests of `retention`.
use super::*;
use std::fs;

#[test]
fn durations() {
    assert_eq!(parse_duration("0"), Ok(0));
    assert_eq!(parse_duration("24h"), Ok(86_400));
    assert_eq!(parse_duration("1h30m"), Ok(5_400));
    assert_eq!(parse_duration("7d"), Ok(604_800));
    assert_eq!(parse_duration(" 90s "), Ok(90));
    for bad in ["", "soon", "10", "1x", "h", "-1h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sizes() {
    assert_eq!(parse_size("0"), Ok(0));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("1gb"), Ok(1_000_000_000));
    assert_eq!(parse_size("500MB"), Ok(500_000_000));
    assert_eq!(parse_size("1.5KiB"), Ok(1536));
    assert_eq!(parse_size("4096"), Ok(4096));
    for bad in ["", "big", "1PB", "-1"] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
}

fn entry(name: &str, size: u64, deleted_secs_ago: Option<u64>, now: SystemTime) -> Entry {
    Entry {
        name: name.into(),
        size,
        deleted: deleted_secs_ago.map(|s| now - Duration::from_secs(s)),
    }
}

#[test]
fn oldest_deleted_go_first_and_running_never() {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let e = [
        entry("running", 500, None, now),
        entry("d-new", 100, Some(10), now),
        entry("d-old", 100, Some(30), now),
        entry("d-mid", 100, Some(20), now),
    ];
    assert!(choose(&e, now, day, 0).is_empty());
    assert_eq!(choose(&e, now, day, 700), ["d-old"]);
    assert_eq!(choose(&e, now, day, 600), ["d-old", "d-mid"]);
    // Even a cap below the running container's size removes only deleted ones.
    assert_eq!(choose(&e, now, day, 1), ["d-old", "d-mid", "d-new"]);
    assert_eq!(
        choose(&e, now, Duration::from_secs(15), 0),
        ["d-old", "d-mid"]
    );
    assert_eq!(choose(&e, now, Duration::ZERO, 0).len(), 3);
}

fn settings(root: &Path, retention: u64, cap: u64) -> Settings {
    let mut s = Settings::defaults("ns");
    s.log_root = root.display().to_string();
    s.log_retention_secs = retention;
    s.log_retention_max_size = cap;
    s
}

#[test]
fn removal_never_follows_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let victim = tmp.path().join("victim");
    fs::create_dir_all(victim.join("sub")).unwrap();
    fs::write(victim.join("keep"), b"precious").unwrap();
    fs::write(victim.join("sub/keep"), b"precious").unwrap();
    let dir = root.join("ns/c1");
    fs::create_dir_all(dir.join("d")).unwrap();
    fs::write(dir.join("container.log"), b"{}\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("link-dir")).unwrap();
    std::os::unix::fs::symlink(victim.join("keep"), dir.join("d/link-file")).unwrap();
    on_delete(&settings(&root, 0, 0), "ns", "c1");
    assert!(!dir.exists(), "the container's directory is removed");
    assert_eq!(fs::read(victim.join("keep")).unwrap(), b"precious");
    assert_eq!(fs::read(victim.join("sub/keep")).unwrap(), b"precious");
    // A namespace directory that is a link is not entered.
    fs::create_dir_all(root.join("real/c2")).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("linked")).unwrap();
    on_delete(&settings(&root, 0, 0), "linked", "c2");
    assert!(root.join("real/c2").exists());
}

#[test]
fn delete_marks_create_unmarks_prune_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    for id in ["a", "b", "run"] {
        fs::create_dir_all(root.join("ns").join(id)).unwrap();
        fs::write(
            root.join("ns").join(id).join("container.log"),
            vec![b'x'; 1000],
        )
        .unwrap();
    }
    let s = settings(&root, 3600, 2500);
    on_delete(&s, "ns", "a");
    std::thread::sleep(Duration::from_millis(20));
    on_delete(&s, "ns", "b");
    assert!(root.join("ns/a").join(MARKER).exists());
    // "b" is reused by a new container: no longer a candidate.
    on_create(&s, "ns", "b");
    assert!(!root.join("ns/b").join(MARKER).exists());
    let p = prune(&s, "ns");
    assert_eq!(p.removed, 1, "{p:?}");
    assert!(!root.join("ns/a").exists());
    assert!(root.join("ns/b").exists() && root.join("ns/run").exists());
    // A removal cut short is finished by the next prune.
    fs::create_dir_all(root.join("ns/.removing-old/x")).unwrap();
    prune(&s, "ns");
    assert!(!root.join("ns/.removing-old").exists());
}

#[test]
fn json_file_only_containers_are_marked_and_pruned_with_their_json_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("logs");
    let json = tmp.path().join("bulk");
    fs::create_dir_all(json.join("ns/j1")).unwrap();
    fs::write(json.join("ns/j1/j1-json.log"), b"{}\n").unwrap();
    fs::create_dir_all(&root).unwrap();
    let mut s = settings(&root, 1, 0);
    s.json_file_root = json.display().to_string();
    on_delete(&s, "ns", "j1");
    assert!(root.join("ns/j1").join(MARKER).exists());
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(prune(&s, "ns").removed, 1);
    assert!(!root.join("ns/j1").exists() && !json.join("ns/j1").exists());
}
