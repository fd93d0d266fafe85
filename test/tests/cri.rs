//! Issue 6: Kubernetes' path. containerd's CRI plugin with the runtime under test as its
//! default runtime, driven by a CRI v1 client (the `k8s-cri` crate's tonic client over
//! containerd's grpc socket): a host-network pod with two busybox containers, their CRI log
//! files, ExecSync, StopContainer, StopPodSandbox, RemovePodSandbox. The pod is served by
//! exactly one shim (grouped by `io.kubernetes.cri.sandbox-id`), which is gone, with
//! everything else, once the pod is removed.
//!
//! The pause image is built offline (`test/images/build-pause.sh`) and imported into
//! `k8s.io` with the busybox test image; nothing is pulled. No CNI is needed.

use k8s_cri::v1::*;
use scribe_e2e::cri::*;
use scribe_e2e::cri_client::Cri;
use scribe_e2e::*;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Lines the printer container writes to stdout / stderr.
const OUT_LINES: usize = 3000;
const ERR_LINES: usize = 200;
/// A line longer than CRI's max_container_log_line_size (16 KiB): CRI splits it (P/F).
const LONG_LINE: usize = 40_000;

/// Removes a directory tree on drop (the last field of `Env`, so after containerd is gone).
struct DirGuard(PathBuf);
impl Drop for DirGuard {
    fn drop(&mut self) {
        if std::env::var_os("SCRIBE_E2E_KEEP").is_some() {
            eprintln!("scribe-e2e: keeping {}", self.0.display());
        } else if procs::mounts_under(&self.0).is_empty() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

fn ns_opts() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn container_config(name: &str, command: Vec<String>) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        }),
        command,
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(ns_opts()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Step(Instant);
impl Step {
    fn log(&mut self, what: &str) {
        eprintln!("cri: {what} ({:?})", self.0.elapsed());
        self.0 = Instant::now();
    }
}

/// A private containerd with CRI, the images imported into `k8s.io`, a connected client.
/// Fields drop in order: the client (removing pods left), containerd, the test's dir.
struct Env {
    cri: Cri,
    c: Containerd,
    paths: CriPaths,
    _dir: DirGuard,
}

fn setup(mode: Option<OptionsMode>, step: &mut Step) -> Env {
    setup_with_options(mode, "", step)
}

/// [`setup`] with more runtime options (TOML lines).
fn setup_with_options(mode: Option<OptionsMode>, extra_options: &str, step: &mut Step) -> Env {
    check_environment();
    let runtime = runtime();
    let version = containerd_version(&containerd_dir());
    let mode = mode.unwrap_or_else(|| OptionsMode::for_version(version));
    let mut paths = CriPaths::new(format!("/tmp/scribe-cri-{}", unique_id("t")));
    paths.extra_options = extra_options.to_string();
    let _ = fs::remove_dir_all(&paths.base);
    let dir = DirGuard(paths.base.clone());
    for d in [
        paths.cni_conf_dir(),
        paths.cni_bin_dir(),
        paths.pod_logs(),
        paths.log_root(),
    ] {
        fs::create_dir_all(&d).unwrap();
    }
    let pause_tar = pause_image_tar();
    let busybox_tar = image_tar();
    let config = cri_config(version, &runtime, &paths, mode);
    let c = Containerd::builder()
        .cri(true)
        .import_image(false)
        .extra_config(&config)
        .start();
    eprintln!(
        "cri: {} with runtime {runtime}, options {mode:?}; CRI config:\n{config}",
        c.version()
    );
    if mode == OptionsMode::ConfigPath {
        eprintln!(
            "{}:\n{}",
            paths.options_file().display(),
            fs::read_to_string(paths.options_file()).unwrap_or_default()
        );
    }
    import_cri_image(&c, &pause_tar, PAUSE_IMAGE);
    import_cri_image(&c, &busybox_tar, IMAGE);
    step.log("containerd started, images imported");

    let cri = Cri::connect(&c.address());
    // The CRI plugin initialises in the background: wait until it answers.
    let mut last = String::new();
    let ready = procs::wait_until(Duration::from_secs(15), || {
        match cri.block(cri.rs().version(VersionRequest {
            version: "v1".into(),
        })) {
            Ok(v) => {
                last = format!("{v:?}");
                v.runtime_api_version == "v1"
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    assert!(ready, "CRI v1 not served: {last}\n{}", c.log_tail(40));
    for img in [PAUSE_IMAGE, IMAGE] {
        let mut last = String::new();
        let seen = procs::wait_until(Duration::from_secs(10), || {
            match cri.block(cri.is().image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: img.into(),
                    ..Default::default()
                }),
                verbose: false,
            })) {
                Ok(r) => r.image.is_some(),
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        assert!(seen, "CRI does not see image {img}: {last}");
    }
    step.log("CRI ready");
    Env {
        cri,
        c,
        paths,
        _dir: dir,
    }
}

/// A host-network pod config (cgroupfs parent `/<instance namespace>`, where the harness's
/// teardown finds and kills anything left), logs under `<pod_logs>/<name>`.
fn pod_config(env: &Env, name: &str) -> PodSandboxConfig {
    let pod_logs = env.paths.pod_logs().join(format!("default_{name}"));
    fs::create_dir_all(&pod_logs).unwrap(); // the kubelet creates it
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: unique_id("uid"),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: pod_logs.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{}", env.c.namespace()),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(ns_opts()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// RunPodSandbox with the default runtime handler; the pod is removed on drop if a test fails.
#[track_caller]
fn run_pod(env: &Env, cfg: &PodSandboxConfig) -> String {
    let pod = env
        .cri
        .block(env.cri.rs().run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg.clone()),
            runtime_handler: String::new(),
        }))
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", env.c.log_tail(60)))
        .pod_sandbox_id;
    env.cri.pods.borrow_mut().push(pod.clone());
    pod
}

/// CreateContainer + StartContainer; returns the container id.
#[track_caller]
fn start_container(
    env: &Env,
    pod: &str,
    pod_cfg: &PodSandboxConfig,
    name: &str,
    cmd: Vec<String>,
) -> String {
    let id = env
        .cri
        .block(env.cri.rs().create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(container_config(name, cmd)),
            sandbox_config: Some(pod_cfg.clone()),
        }))
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}\n{}", env.c.log_tail(60)))
        .container_id;
    env.cri
        .block(env.cri.rs().start_container(StartContainerRequest {
            container_id: id.clone(),
        }))
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e}\n{}", env.c.log_tail(60)));
    id
}

#[track_caller]
/// ExecSync of `sh -c script` in container `id` (10 s timeout); panics with containerd's log tail
/// when the call itself fails.
fn exec_sh(env: &Env, id: &str, script: &str) -> ExecSyncResponse {
    env.cri
        .block(env.cri.rs().exec_sync(ExecSyncRequest {
            container_id: id.to_string(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 10,
        }))
        .unwrap_or_else(|e| panic!("ExecSync {script:?}: {e}\n{}", env.c.log_tail(60)))
}

fn container_status(env: &Env, id: &str) -> ContainerStatus {
    env.cri
        .block(env.cri.rs().container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        }))
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
        .status
        .expect("ContainerStatus without status")
}

/// The runtime's state dir of `id` under the `Root` option (`<Root>/<id>`, or
/// `<Root>/k8s.io/<id>` as containerd's runc shim does), if it exists.
fn runtime_state(paths: &CriPaths, id: &str) -> Option<PathBuf> {
    [
        paths.runtime_root().join(id),
        paths.runtime_root().join(CRI_NAMESPACE).join(id),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// StopPodSandbox + RemovePodSandbox, then assert the pod's shim `shim` is gone and that
/// nothing of `ids` (the sandbox and its containers) is left.
#[track_caller]
fn remove_pod_and_check(env: &Env, pod: &str, ids: &[&String], shim: i32, step: &mut Step) {
    let c = &env.c;
    env.cri
        .block(env.cri.rs().stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.into(),
        }))
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.log_tail(60)));
    for id in ids.iter().filter(|id| id.as_str() != pod) {
        let st = container_status(env, id);
        assert_eq!(
            st.state,
            ContainerState::ContainerExited as i32,
            "container {id} after StopPodSandbox: {st:?}"
        );
    }
    step.log("StopPodSandbox");
    env.cri
        .block(env.cri.rs().remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.into(),
        }))
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.log_tail(60)));
    env.cri.pods.borrow_mut().retain(|p| p != pod);
    step.log("RemovePodSandbox");

    assert!(
        procs::wait_pid_gone(shim, Duration::from_secs(10)),
        "the pod's shim {shim} still runs after RemovePodSandbox: {:?}\n{}",
        procs::cmdline(shim),
        c.log_tail(60)
    );
    let pods = env
        .cri
        .block(
            env.cri
                .rs()
                .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .expect("ListPodSandbox")
        .items;
    assert!(pods.is_empty(), "pods left: {pods:?}");
    let ctrs = env
        .cri
        .block(
            env.cri
                .rs()
                .list_containers(ListContainersRequest { filter: None }),
        )
        .expect("ListContainers")
        .containers;
    assert!(ctrs.is_empty(), "containers left: {ctrs:?}");
    for what in ["tasks", "containers"] {
        let o = ctr_ns(
            c,
            CRI_NAMESPACE,
            &[what, "ls", "-q"],
            Duration::from_secs(30),
        );
        assert!(
            o.success() && o.stdout.trim().is_empty(),
            "k8s.io {what} left: {o}"
        );
    }
    let group_socket = shim_socket_ns(c, CRI_NAMESPACE, pod);
    let gone = procs::wait_until(Duration::from_secs(10), || {
        ids.iter().all(|id| {
            !bundle_dir_ns(c, CRI_NAMESPACE, id).exists() && runtime_state(&env.paths, id).is_none()
        }) && !group_socket.exists()
            && c.container_pids().is_empty()
    });
    assert!(
        gone,
        "left behind after RemovePodSandbox: bundles {:?}, runtime state {:?}, socket {} exists={}, container pids {:?}",
        fs::read_dir(c.state().join("io.containerd.runtime.v2.task").join(CRI_NAMESPACE))
            .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default(),
        ids.iter().filter_map(|id| runtime_state(&env.paths, id)).collect::<Vec<_>>(),
        group_socket.display(),
        group_socket.exists(),
        c.container_pids()
    );
    c.assert_no_shims_no_mounts();
    step.log("nothing left");
}

/// Scribe only: the lifecycle records of `id` are under the `LogRoot` the CRI options set.
#[track_caller]
fn assert_records_in_log_root(paths: &CriPaths, id: &str, mode: &str) {
    if !testing_scribe() {
        return;
    }
    let rec = paths
        .log_root()
        .join(CRI_NAMESPACE)
        .join(id)
        .join("container.log");
    let text = fs::read_to_string(&rec).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: LogRoot of the CRI runtime options ({mode}) not applied by the shim",
            rec.display()
        )
    });
    assert!(
        text.contains("\"event\":\"start\""),
        "{}: no start record:\n{text}",
        rec.display()
    );
}

#[test]
fn pod_with_two_containers_one_shim() {
    let t0 = Instant::now();
    let mut step = Step(Instant::now());
    let env = setup(None, &mut step);
    let (c, cri, paths) = (&env.c, &env.cri, &env.paths);

    // ---- RunPodSandbox: host network, default runtime handler ----
    let pod_cfg = pod_config(&env, "scribe-pod");
    let pod_logs = PathBuf::from(&pod_cfg.log_directory);
    let pod = run_pod(&env, &pod_cfg);
    step.log("RunPodSandbox");

    // ---- two containers ----
    let printer_script = format!(
        "trap 'exit 7' TERM; \
         i=1; while [ $i -le {OUT_LINES} ]; do echo out-$i; i=$((i+1)); done; \
         i=1; while [ $i -le {ERR_LINES} ]; do echo err-$i >&2; i=$((i+1)); done; \
         head -c {LONG_LINE} /dev/zero | tr '\\0' x; echo; \
         echo out-done; \
         while :; do sleep 3600 & wait $!; done"
    );
    let printer = start_container(
        &env,
        &pod,
        &pod_cfg,
        "printer",
        vec!["sh".into(), "-c".into(), printer_script],
    );
    let sleeper = start_container(
        &env,
        &pod,
        &pod_cfg,
        "sleeper",
        vec!["sleep".into(), "3600".into()],
    );
    step.log("CreateContainer + StartContainer x2");
    for id in [&printer, &sleeper] {
        let st = container_status(&env, id);
        assert_eq!(
            st.state,
            ContainerState::ContainerRunning as i32,
            "container {id} not running: {st:?}"
        );
    }
    assert!(
        runtime_state(paths, &printer).is_some(),
        "no runtime state of {printer} under the Root option {}",
        paths.runtime_root().display()
    );

    // ---- the CRI log file holds every line, in order ----
    let log_file = pod_logs.join("printer.log");
    let mut parsed = Vec::new();
    let complete = procs::wait_until(Duration::from_secs(15), || {
        let text = fs::read_to_string(&log_file).unwrap_or_default();
        parsed = parse_cri_log(&text).unwrap_or_else(|e| panic!("{}: {e}", log_file.display()));
        cri_log_messages(&parsed, "stdout")
            .last()
            .map(String::as_str)
            == Some("out-done")
            && cri_log_messages(&parsed, "stderr").len() >= ERR_LINES
    });
    let out = cri_log_messages(&parsed, "stdout");
    let err = cri_log_messages(&parsed, "stderr");
    assert!(
        complete,
        "{} incomplete after 15 s: {} stdout lines (last {:?}), {} stderr lines",
        log_file.display(),
        out.len(),
        out.last().map(|l| &l[..l.len().min(80)]),
        err.len()
    );
    let mut want_out: Vec<String> = (1..=OUT_LINES).map(|i| format!("out-{i}")).collect();
    want_out.push("x".repeat(LONG_LINE));
    want_out.push("out-done".into());
    assert_eq!(
        out.len(),
        want_out.len(),
        "stdout line count in the CRI log"
    );
    for (i, (got, want)) in out.iter().zip(&want_out).enumerate() {
        assert!(
            got == want,
            "stdout line {} of the CRI log: got {:?}, want {:?}",
            i + 1,
            &got[..got.len().min(80)],
            &want[..want.len().min(80)]
        );
    }
    let want_err: Vec<String> = (1..=ERR_LINES).map(|i| format!("err-{i}")).collect();
    assert_eq!(err, want_err, "stderr lines of the CRI log");
    assert!(
        parsed.iter().any(|l| l.tag == "P"),
        "the {LONG_LINE}-byte line should have been split by CRI into P pieces"
    );
    step.log("CRI log complete");

    // ---- one shim for the whole pod ----
    let shims = c.shim_pids();
    assert_eq!(
        shims.len(),
        1,
        "a pod of sandbox + 2 containers must be served by exactly one shim, got {:?}",
        shims
            .iter()
            .map(|p| (p, procs::cmdline(*p)))
            .collect::<Vec<_>>()
    );
    let shim = shims[0];
    let group_socket = shim_socket_ns(c, CRI_NAMESPACE, &pod);
    for id in [&pod, &printer, &sleeper] {
        let b = bundle_dir_ns(c, CRI_NAMESPACE, id);
        assert_eq!(
            scribe_e2e::containerd::bundle_socket(&b).map(PathBuf::from),
            Some(group_socket.clone()),
            "bundle {} does not name the pod's shim socket",
            b.display()
        );
    }
    assert_records_in_log_root(paths, &printer, "default mode for this containerd");

    // ---- ExecSync ----
    let r = exec_sh(&env, &sleeper, "echo hi; echo oops >&2; exit 3");
    assert_eq!(
        (
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
            r.exit_code
        ),
        ("hi\n".to_string(), "oops\n".to_string(), 3),
        "ExecSync stdout, stderr, exit code"
    );
    step.log("ExecSync");

    // ---- UpdateContainerResources (kubelet's in-place resize): reaches the shim's Update, which
    // applies it through `runc update`; the container's own cgroup files show the new limits ----
    let limit: i64 = 96 * 1024 * 1024;
    cri.block(
        cri.rs()
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: sleeper.clone(),
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: limit,
                    cpu_shares: 512,
                    ..Default::default()
                }),
                ..Default::default()
            }),
    )
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}\n{}", c.log_tail(60)));
    // cgroup v1 (this host) or v2 paths as the container sees them
    let r = exec_sh(
        &env,
        &sleeper,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight",
    );
    let shown = String::from_utf8_lossy(&r.stdout).into_owned();
    let values: Vec<&str> = shown.split_whitespace().collect();
    assert_eq!(
        values.first().copied(),
        Some(limit.to_string().as_str()),
        "memory limit inside the container after the update: {shown:?} {:?}",
        String::from_utf8_lossy(&r.stderr)
    );
    // cpu.shares 512 on v1; on v2 runc converts shares to a weight (512 -> 20)
    assert!(
        matches!(values.get(1).copied(), Some("512") | Some("20")),
        "cpu shares inside the container after the update: {shown:?}"
    );
    step.log("UpdateContainerResources");

    // ---- StopContainer: SIGTERM reaches the printer, its exit code comes back ----
    let t = Instant::now();
    cri.block(cri.rs().stop_container(StopContainerRequest {
        container_id: printer.clone(),
        timeout: 10,
    }))
    .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", c.log_tail(60)));
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "StopContainer took {:?}: SIGTERM not delivered?",
        t.elapsed()
    );
    let st = container_status(&env, &printer);
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::ContainerExited as i32, 7),
        "printer after StopContainer: {st:?}"
    );
    assert!(procs::pid_alive(shim), "the pod's shim exited early");
    step.log("StopContainer");

    // ---- StopPodSandbox, RemovePodSandbox, nothing left ----
    remove_pod_and_check(&env, &pod, &[&pod, &printer, &sleeper], shim, &mut step);
    eprintln!("cri: total {:?}", t0.elapsed());
}

/// Runtime options through `ConfigPath` (the only way on containerd 1.6, which has no
/// `config_body`; also valid on 1.7/2.x): the shim reads the file CRI names.
#[test]
fn options_through_config_path() {
    let mut step = Step(Instant::now());
    let env = setup(Some(OptionsMode::ConfigPath), &mut step);
    let pod_cfg = pod_config(&env, "scribe-opts");
    let pod = run_pod(&env, &pod_cfg);
    let ctr = start_container(
        &env,
        &pod,
        &pod_cfg,
        "hello",
        vec![
            "sh".into(),
            "-c".into(),
            "echo hello; exec sleep 3600".into(),
        ],
    );
    assert!(
        runtime_state(&env.paths, &ctr).is_some(),
        "no runtime state of {ctr} under the Root option {}",
        env.paths.runtime_root().display()
    );
    assert_records_in_log_root(&env.paths, &ctr, "ConfigPath");
    let shims = env.c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    step.log("pod running");
    remove_pod_and_check(&env, &pod, &[&pod, &ctr], shims[0], &mut step);
}

/// A pod whose cgroup parent is a `.slice`: containerd's CRI builds the cgroupsPath
/// `test.slice:cri-containerd:<id>` for it whatever the cgroup driver.
fn slice_pod_config(env: &Env, name: &str, parent: &str) -> PodSandboxConfig {
    let mut cfg = pod_config(env, name);
    if let Some(l) = cfg.linux.as_mut() {
        l.cgroup_parent = parent.to_string();
    }
    cfg
}

/// The pid of task `id` in `k8s.io` (from `ctr task ls`).
fn cri_task_pid(c: &Containerd, id: &str) -> Option<i32> {
    let o = ctr_ns(c, CRI_NAMESPACE, &["tasks", "ls"], Duration::from_secs(30));
    o.stdout_lines().iter().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id)).then(|| f.get(1).and_then(|p| p.parse().ok()))?
    })
}

/// Issue 14 item 1: without `SystemdCgroup`, a `slice:prefix:name` cgroupsPath is a cgroupfs path
/// to runc (as with containerd's runc shim): the pod runs, its cgroup is named after that path,
/// and Stats work.
#[test]
fn slice_cgroup_parent_without_systemd_cgroup_runs() {
    let mut step = Step(Instant::now());
    let env = setup(None, &mut step);
    let c = &env.c;
    let parent = format!("scribe-{}.slice", std::process::id());
    let pod_cfg = slice_pod_config(&env, "scribe-slice", &parent);
    let pod = run_pod(&env, &pod_cfg);
    step.log("RunPodSandbox with a .slice parent");
    let ctr = start_container(
        &env,
        &pod,
        &pod_cfg,
        "worker",
        vec![
            "sh".into(),
            "-c".into(),
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 3600".into(),
        ],
    );
    let st = container_status(&env, &ctr);
    assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    let pid = cri_task_pid(c, &ctr).expect("the container's task pid");
    let want = format!("{parent}:cri-containerd:{ctr}");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    assert!(
        cgroups.lines().any(|l| l.ends_with(&want)),
        "the container's cgroup is not the cgroupfs path {want:?}:\n{cgroups}"
    );
    // Stats through the shim (cgroup metrics of that cgroup).
    let stats = env
        .cri
        .block(env.cri.rs().container_stats(ContainerStatsRequest {
            container_id: ctr.clone(),
        }))
        .unwrap_or_else(|e| panic!("ContainerStats: {e}\n{}", c.log_tail(60)))
        .stats
        .expect("ContainerStats without stats");
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map(|v| v.value)
        .unwrap_or(0);
    let mem = stats
        .memory
        .as_ref()
        .and_then(|m| m.usage_bytes.as_ref().or(m.working_set_bytes.as_ref()))
        .map(|v| v.value)
        .unwrap_or(0);
    eprintln!("cri: stats of {ctr}: cpu {cpu} ns, memory {mem} bytes; cgroup {want}");
    assert!(cpu > 0 && mem > 0, "empty stats: {stats:?}");
    assert_records_in_log_root(&env.paths, &ctr, "slice parent");
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    step.log("pod running, stats read");
    remove_pod_and_check(&env, &pod, &[&pod, &ctr], shims[0], &mut step);
}

/// With `SystemdCgroup = true` on a host without systemd the pod cannot run: CRI reports runc's
/// own error promptly (no hang).
#[test]
fn slice_cgroup_parent_with_systemd_cgroup_fails_clearly() {
    let mut step = Step(Instant::now());
    let env = setup_with_options(None, "SystemdCgroup = true\n", &mut step);
    let parent = format!("scribe-{}.slice", std::process::id());
    let pod_cfg = slice_pod_config(&env, "scribe-systemd", &parent);
    let t = Instant::now();
    let r = env
        .cri
        .block(env.cri.rs().run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_cfg),
            runtime_handler: String::new(),
        }));
    let took = t.elapsed();
    eprintln!("cri: RunPodSandbox with SystemdCgroup = true answered in {took:?}: {r:?}");
    match r {
        Ok(pod) => {
            env.cri.pods.borrow_mut().push(pod.pod_sandbox_id.clone());
            panic!("RunPodSandbox succeeded with SystemdCgroup = true on a host without systemd");
        }
        Err(e) => {
            let msg = e.message();
            assert!(
                msg.contains("systemd") && msg.contains("not running"),
                "CRI's error does not carry runc's reason: {e}"
            );
            assert_ne!(e.code(), tonic::Code::DeadlineExceeded, "{e}");
        }
    }
    assert!(
        took < Duration::from_secs(20),
        "RunPodSandbox took {took:?}"
    );
    let c = &env.c;
    assert!(
        procs::wait_until(Duration::from_secs(10), || c.shim_pids().is_empty()),
        "shims left after the failed pod: {:?}",
        c.shim_pids()
    );
}

/// Kubernetes users choose log drivers per pod with annotations, which containerd's CRI passes to
/// the runtime only when its runtime entry lists them (`pod_annotations = ["io.scribe.log.*"]`,
/// as in `examples/`). A pod annotation turns the json-file driver on for the pod's containers;
/// a pod annotation pointing fluentd at containerd's own socket is refused (the address is not in
/// `AllowedLogAddresses`), while the same address set by the node's admin is not an annotation's
/// choice and would be used.
#[test]
fn pod_annotations_choose_log_drivers_within_the_allow_lists() {
    if !testing_scribe() {
        eprintln!("Scribe's own feature: skipped for {}", runtime());
        return;
    }
    let mut step = Step(Instant::now());
    let env = setup_with_options(
        None,
        "AllowedLogDrivers = [\"json-file\", \"fluentd\"]\n",
        &mut step,
    );
    let mut pod_cfg = pod_config(&env, "scribe-annotated");
    pod_cfg
        .annotations
        .insert("io.scribe.log.driver".into(), "json-file".into());
    pod_cfg
        .annotations
        .insert("io.scribe.log.max-size".into(), "1m".into());
    let pod = run_pod(&env, &pod_cfg);
    let ctr = start_container(
        &env,
        &pod,
        &pod_cfg,
        "annotated",
        vec![
            "sh".into(),
            "-c".into(),
            "echo from-the-pod; echo to-stderr >&2; exec sleep 3600".into(),
        ],
    );
    let json = env
        .paths
        .log_root()
        .join(CRI_NAMESPACE)
        .join(&ctr)
        .join(format!("{ctr}-json.log"));
    let mut text = String::new();
    let seen = procs::wait_until(Duration::from_secs(10), || {
        text = fs::read_to_string(&json).unwrap_or_default();
        text.contains("from-the-pod") && text.contains("to-stderr")
    });
    assert!(
        seen,
        "the pod annotation did not reach the shim: {} holds {text:?}",
        json.display()
    );
    step.log("json-file chosen by pod annotation");

    let containerd_socket = format!("unix://{}", env.c.address().display());
    let mut bad = pod_config(&env, "scribe-to-containerd");
    bad.annotations
        .insert("io.scribe.log.driver".into(), "fluentd".into());
    bad.annotations.insert(
        "io.scribe.log.fluentd-address".into(),
        containerd_socket.clone(),
    );
    let refused = env
        .cri
        .block(env.cri.rs().run_pod_sandbox(RunPodSandboxRequest {
            config: Some(bad),
            runtime_handler: String::new(),
        }));
    let err = match refused {
        Ok(r) => {
            env.cri.pods.borrow_mut().push(r.pod_sandbox_id.clone());
            panic!(
                "a pod pointing fluentd at containerd's socket ran: {}",
                r.pod_sandbox_id
            )
        }
        Err(e) => e.to_string(),
    };
    for word in ["fluentd-address", "AllowedLogAddresses"] {
        assert!(err.contains(word), "the error must name {word}: {err}");
    }
    step.log("fluentd at containerd's socket refused");
    let shims = env.c.shim_pids();
    remove_pod_and_check(&env, &pod, &[&pod, &ctr], shims[0], &mut step);
}

/// Issue 16, Kubernetes path: a container writes about 1,000 numbered lines a second (each with
/// a monotonic timestamp, `/proc/uptime`); containerd is SIGKILLed for 20 s and started again.
/// The container's CRI log file has every line once, in order, and the container was never held
/// up more than 100 ms (asserted for Scribe, whose shim spools while nobody reads the FIFO;
/// printed for any runtime: containerd's Go shim blocks the container once the pipes fill).
#[test]
fn containerd_killed_for_20s_loses_no_line_and_never_stalls_the_container() {
    const N: usize = 30_000;
    let mut step = Step(Instant::now());
    let mut env = setup(None, &mut step);
    let pod_cfg = pod_config(&env, "spoolpod");
    let pod = run_pod(&env, &pod_cfg);
    let script = format!(
        "sleep 1; i=1; while [ $i -le {N} ]; do read up x < /proc/uptime; echo \"line $i $up\"; \
         if [ $((i % 10)) -eq 0 ]; then usleep 10000; fi; i=$((i+1)); done"
    );
    let id = start_container(
        &env,
        &pod,
        &pod_cfg,
        "ticker",
        vec!["sh".into(), "-c".into(), script],
    );
    step.log("ticker started");
    std::thread::sleep(Duration::from_secs(4));
    env.c.kill();
    step.log("containerd SIGKILLed");
    std::thread::sleep(Duration::from_secs(20));
    env.c.start_again();
    step.log("containerd started again");
    let cri = scribe_e2e::cri_client::Cri::connect(&env.c.address());
    let exited = procs::wait_until(Duration::from_secs(120), || {
        cri.block(cri.rs().container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        }))
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| s.state == ContainerState::ContainerExited as i32)
    });
    step.log("ticker exited");
    let log_file = env
        .paths
        .pod_logs()
        .join("default_spoolpod")
        .join("ticker.log");
    let mut out = Vec::new();
    procs::wait_until(Duration::from_secs(15), || {
        let text = fs::read_to_string(&log_file).unwrap_or_default();
        let parsed = parse_cri_log(&text).unwrap_or_else(|e| panic!("{}: {e}", log_file.display()));
        out = cri_log_messages(&parsed, "stdout");
        out.len() >= N
    });
    // Every line once, in order; the container's own timestamps give its longest stall.
    let mut first_bad = None;
    let mut stamps = Vec::with_capacity(out.len());
    for (i, l) in out.iter().enumerate() {
        let mut f = l.split_whitespace();
        let ok = f.next() == Some("line") && f.next() == Some(&*(i + 1).to_string());
        if !ok && first_bad.is_none() {
            first_bad = Some(format!("line {} is {l:?}", i + 1));
        }
        if let Some(t) = f.next().and_then(|t| t.parse::<f64>().ok()) {
            stamps.push(t);
        }
    }
    let (gap, at) = stamps
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1] - w[0], i + 1))
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
    eprintln!(
        "runtime {}: containerd killed 20 s; CRI log has {} of {N} lines, first problem {first_bad:?}; largest gap between container timestamps {:.0} ms (after line {at})",
        runtime(),
        out.len(),
        gap * 1000.0
    );
    if !testing_scribe() {
        return;
    }
    assert!(exited, "the ticker did not exit\n{}", env.c.log_tail(40));
    assert_eq!(first_bad, None, "{}", log_file.display());
    assert_eq!(out.len(), N, "lines in {}", log_file.display());
    assert!(
        gap < 0.1,
        "the container was held up {:.0} ms after line {at}",
        gap * 1000.0
    );
}
