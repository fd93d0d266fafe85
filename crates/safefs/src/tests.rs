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

#[test]
fn stat_nofollow_describes_links_as_links() {
    let (t, d) = root();
    let v = victim(&t);
    symlink(&v, t.path().join("link")).expect("symlink");
    std::fs::create_dir(t.path().join("sub")).expect("mkdir");
    let link = d.stat_nofollow("link").expect("stat link");
    assert_eq!(link.kind, Kind::Symlink);
    let file = d.stat_nofollow("victim").expect("stat file");
    assert_eq!((file.kind, file.size), (Kind::File, 9));
    assert_eq!(d.stat_nofollow("sub").expect("stat dir").kind, Kind::Dir);
    assert!(d
        .stat_nofollow("missing")
        .expect_err("missing")
        .is_not_found());
}

#[test]
fn remove_tree_unlinks_planted_links_and_leaves_their_targets() {
    let (t, d) = root();
    let v = victim(&t);
    let outside = t.path().join("outside");
    std::fs::create_dir_all(outside.join("deep")).expect("mkdir outside");
    std::fs::write(outside.join("deep/keep"), "precious\n").expect("write");
    let c = t.path().join("c");
    std::fs::create_dir_all(c.join("sub")).expect("mkdir c");
    std::fs::write(c.join("sub/log"), "x").expect("write");
    symlink(&v, c.join("sub/file-link")).expect("symlink file");
    symlink(&outside, c.join("dir-link")).expect("symlink dir");
    d.remove_tree("c", 8).expect("remove tree");
    assert!(!c.exists());
    assert_eq!(std::fs::read_to_string(&v).expect("victim"), "precious\n");
    assert_eq!(
        std::fs::read_to_string(outside.join("deep/keep")).expect("outside"),
        "precious\n"
    );
    // A link given as the tree itself is removed as a link.
    symlink(&outside, t.path().join("top-link")).expect("symlink top");
    d.remove_tree("top-link", 8).expect("remove link");
    assert!(std::fs::symlink_metadata(t.path().join("top-link")).is_err());
    assert!(outside.join("deep/keep").exists());
}

#[test]
fn remove_tree_refuses_a_tree_deeper_than_asked() {
    let (t, d) = root();
    std::fs::create_dir_all(t.path().join("a/b/c")).expect("mkdir");
    assert!(d.remove_tree("a", 2).is_err());
    assert!(t.path().join("a/b/c").exists());
    d.remove_tree("a", 3).expect("remove");
    assert!(!t.path().join("a").exists());
}

#[test]
fn tree_size_counts_files_not_link_targets() {
    let (t, d) = root();
    let v = victim(&t);
    std::fs::create_dir_all(t.path().join("c/sub")).expect("mkdir");
    std::fs::write(t.path().join("c/a"), [0u8; 100]).expect("write");
    std::fs::write(t.path().join("c/sub/b"), [0u8; 20]).expect("write");
    symlink(&v, t.path().join("c/link")).expect("symlink file");
    symlink(t.path(), t.path().join("c/sub/loop")).expect("symlink dir");
    assert_eq!(d.tree_size("c", 8), 120);
    assert_eq!(d.tree_size("c", 1), 100);
    assert_eq!(d.tree_size("missing", 8), 0);
}

#[test]
fn replace_file_replaces_a_planted_link_without_writing_its_target() {
    let (t, d) = root();
    let v = victim(&t);
    symlink(&v, t.path().join("marker")).expect("symlink");
    let mut f = d.replace_file("marker", 0o644).expect("replace");
    f.write_all(b"now\n").expect("write");
    assert_eq!(std::fs::read_to_string(&v).expect("victim"), "precious\n");
    let m = std::fs::symlink_metadata(t.path().join("marker")).expect("marker");
    assert!(m.file_type().is_file());
    // Again over the existing file: a fresh file.
    d.replace_file("marker", 0o644).expect("replace again");
    assert_eq!(
        std::fs::read_to_string(t.path().join("marker")).expect("read"),
        ""
    );
}

#[test]
fn lock_file_is_exclusive_and_refuses_a_link() {
    let (t, d) = root();
    let v = victim(&t);
    let held = d.lock_file(".lock", 0o600).expect("lock");
    let other = std::fs::File::open(t.path().join(".lock")).expect("open");
    assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_err());
    drop(held);
    let other = std::fs::File::open(t.path().join(".lock")).expect("open");
    assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_ok());
    symlink(&v, t.path().join("linked.lock")).expect("symlink");
    let e = d.lock_file("linked.lock", 0o600).expect_err("link");
    assert!(e.to_string().contains(SYMLINK_REFUSED), "{e}");
    assert_eq!(std::fs::read_to_string(&v).expect("victim"), "precious\n");
}
