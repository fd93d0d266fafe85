use super::*;
use std::io::Write;
use std::os::unix::fs::symlink;

fn root() -> (tempfile::TempDir, SafeDir) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = SafeDir::open_root(t.path(), false, 0o755).expect("open root");
    (t, d)
}

/// A file outside the root that a planted link points at; must stay as it was.
fn victim(t: &tempfile::TempDir) -> PathBuf {
    let v = t.path().join("victim");
    std::fs::write(&v, "precious\n").expect("write victim");
    v
}

#[test]
fn appends_and_creates_directories() {
    let (t, d) = root();
    let c = d.create_dir_all(["ns", "c1"], 0o755).expect("mkdir");
    assert_eq!(c.path(), t.path().join("ns/c1"));
    let mut f = c.open_append("c1-json.log", 0o640, false).expect("open");
    f.write_all(b"a\n").expect("write");
    let mut f = c.open_append("c1-json.log", 0o640, true).expect("reopen");
    f.write_all(b"b\n").expect("write");
    assert_eq!(
        std::fs::read_to_string(t.path().join("ns/c1/c1-json.log")).expect("read"),
        "a\nb\n"
    );
    let mut names = c.entries().expect("list");
    names.sort();
    assert_eq!(names, vec![OsString::from("c1-json.log")]);
}

#[test]
fn refuses_a_symlinked_file_and_leaves_the_target_alone() {
    let (t, d) = root();
    let v = victim(&t);
    let dir = d.create_dir("c", 0o755).expect("mkdir");
    symlink(&v, t.path().join("c/c-json.log")).expect("plant");
    let e = dir.open_append("c-json.log", 0o640, true).unwrap_err();
    assert!(e.to_string().contains(SYMLINK_REFUSED), "{e}");
    assert_eq!(e.path, t.path().join("c/c-json.log"));
    let e = dir.create_excl("c-json.log", 0o640).unwrap_err();
    assert_eq!(e.path, t.path().join("c/c-json.log"));
    assert_eq!(std::fs::read_to_string(&v).expect("read"), "precious\n");
}

#[test]
fn refuses_symlinked_directories_at_every_level() {
    let (t, d) = root();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    symlink(elsewhere.path(), t.path().join("ns")).expect("plant ns");
    let e = d.create_dir_all(["ns", "c"], 0o755).unwrap_err();
    assert_eq!(e.path, t.path().join("ns"));
    assert!(e.to_string().contains(SYMLINK_REFUSED), "{e}");

    std::fs::create_dir(t.path().join("ns2")).expect("mkdir");
    symlink(elsewhere.path(), t.path().join("ns2/c")).expect("plant id");
    let e = d.create_dir_all(["ns2", "c"], 0o755).unwrap_err();
    assert_eq!(e.path, t.path().join("ns2/c"));
    assert!(std::fs::read_dir(elsewhere.path())
        .expect("ls")
        .next()
        .is_none());
}

#[test]
fn create_excl_refuses_an_existing_file() {
    let (t, d) = root();
    let v = victim(&t);
    let e = d.create_excl("victim", 0o640).unwrap_err();
    assert_eq!(e.source.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(&v).expect("read"), "precious\n");
}

#[test]
fn refuses_hard_links_and_fifos_without_blocking() {
    let (t, d) = root();
    let v = victim(&t);
    std::fs::hard_link(&v, t.path().join("linked")).expect("hard link");
    let e = d.open_append("linked", 0o640, false).unwrap_err();
    assert!(e.to_string().contains("hard links"), "{e}");
    nix::unistd::mkfifo(&t.path().join("fifo"), Mode::from_bits_truncate(0o600)).expect("mkfifo");
    // Without O_NONBLOCK this open would wait for a reader forever.
    let e = d.open_append("fifo", 0o640, false).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert_eq!(std::fs::read_to_string(&v).expect("read"), "precious\n");
}

#[test]
fn rename_and_remove_act_on_names_not_targets() {
    let (t, d) = root();
    let v = victim(&t);
    symlink(&v, t.path().join("link")).expect("plant");
    std::fs::write(t.path().join("a"), "A").expect("write");
    d.rename("a", "link").expect("rename over link");
    assert_eq!(
        std::fs::read_to_string(t.path().join("link")).expect("read"),
        "A"
    );
    symlink(&v, t.path().join("link2")).expect("plant");
    d.remove("link2").expect("remove link");
    assert_eq!(std::fs::read_to_string(&v).expect("read"), "precious\n");
    assert!(d.remove("missing").unwrap_err().is_not_found());
}

#[test]
fn rejects_names_that_are_not_one_component() {
    let (_t, d) = root();
    for bad in ["", ".", "..", "a/b"] {
        assert!(d.open_dir(bad).is_err(), "{bad:?}");
        assert!(d.open_append(bad, 0o640, false).is_err(), "{bad:?}");
    }
}

#[test]
fn last_component_helper_refuses_a_link() {
    let t = tempfile::tempdir().expect("tempdir");
    let v = victim(&t);
    let out = t.path().join("sub/out.log");
    let mut f = open_append_last_component(&out, 0o755, 0o644).expect("open");
    f.write_all(b"x").expect("write");
    symlink(&v, t.path().join("sub/evil.log")).expect("plant");
    let e = open_append_last_component(&t.path().join("sub/evil.log"), 0o755, 0o644).unwrap_err();
    assert!(e.to_string().contains(SYMLINK_REFUSED), "{e}");
    assert_eq!(std::fs::read_to_string(&v).expect("read"), "precious\n");
}
