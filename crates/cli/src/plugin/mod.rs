//! `scribe plugin`: Scribe as a Docker log-driver plugin. dockerd (or Scribe's own shim)
//! drives it over HTTP on a unix socket; each container's output arrives in a FIFO and is
//! written into Scribe's json-file (or `local`) log and container records, the layout the shim
//! writes, so `scribe logs -n docker ID` reads it and `docker logs` reads it back through
//! `/LogDriver.ReadLogs`.
//!
//! - [`opts`]: the command line;
//! - [`http`]: requests and responses;
//! - [`logging`]: one container's FIFO, read on a thread of its own;
//! - [`readlogs`]: ReadLogs through the reader `scribe logs` uses.
//!
//! Threads: one per connection (dockerd keeps a few alive), one per logging container, one
//! waiting for SIGTERM/SIGINT.

pub mod http;
pub mod logging;
pub mod opts;
pub mod readlogs;

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use scribe_events::{ContainerEvent, ContainerLog, ContainerRecord, ContainerStatus};
use scribe_io::plugin::proto::{
    self, ActivateResponse, Capabilities, CapabilitiesResponse, ErrResponse, ReadLogsRequest,
    StartLoggingRequest, StopLoggingRequest,
};

use http::{HttpError, Request};
use logging::{Summary, Wake};
use opts::PluginArgs;

/// One container's session, by FIFO path.
struct Session {
    container: String,
    wake: Arc<Wake>,
    thread: JoinHandle<Summary>,
    /// The start record, until it is written (at the first entry, or at StopLogging).
    start: Arc<Mutex<Option<ContainerRecord>>>,
    /// dockerd asked ReadLogs for this container while the session ran.
    read: Arc<AtomicBool>,
}

/// The plugin's state, shared by the connection threads.
pub struct Server {
    args: PluginArgs,
    sessions: Mutex<HashMap<String, Session>>,
    shutting_down: AtomicBool,
}

/// A reply to a request.
#[derive(Debug)]
pub enum Reply {
    /// A status and a JSON body.
    Json(u16, Vec<u8>),
    /// A ReadLogs stream.
    Stream(Box<ReadLogsRequest>),
}

fn err_body(msg: impl Into<String>) -> Vec<u8> {
    serde_json::to_vec(&ErrResponse { err: msg.into() }).unwrap_or_default()
}

fn error(status: u16, msg: impl Into<String>) -> Reply {
    Reply::Json(status, err_body(msg))
}

fn ok() -> Reply {
    Reply::Json(200, err_body(""))
}

/// A body decoded, or the 400 reply saying why not.
fn body<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Reply> {
    serde_json::from_slice(&req.body)
        .map_err(|e| error(400, format!("{}: bad JSON body: {e}", req.path)))
}

impl Server {
    /// A server for `args` (the log root is created).
    pub fn new(args: PluginArgs) -> Result<Server, String> {
        scribe_safefs::SafeDir::open_root(&args.log_root, true, 0o755)
            .map_err(|e| format!("log root: {e}"))?;
        Ok(Server {
            args,
            sessions: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
        })
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a session of `container` runs (a follower goes on while one does).
    pub fn is_logging(&self, container: &str) -> bool {
        self.sessions().values().any(|s| s.container == container)
    }

    /// Answers one request (ReadLogs' stream is sent by the caller).
    pub fn handle(&self, req: &Request) -> Reply {
        if req.method != "POST" {
            return error(
                405,
                format!("{} {}: only POST is served", req.method, req.path),
            );
        }
        match req.path.as_str() {
            proto::ACTIVATE => Reply::Json(
                200,
                serde_json::to_vec(&ActivateResponse {
                    implements: vec!["LogDriver".into()],
                })
                .unwrap_or_default(),
            ),
            proto::CAPABILITIES => Reply::Json(
                200,
                serde_json::to_vec(&CapabilitiesResponse {
                    cap: Capabilities { read_logs: true },
                    err: String::new(),
                })
                .unwrap_or_default(),
            ),
            proto::START_LOGGING => match body::<StartLoggingRequest>(req) {
                Ok(r) => match self.start_logging(&r) {
                    Ok(()) => ok(),
                    Err(e) => error(500, e),
                },
                Err(reply) => reply,
            },
            proto::STOP_LOGGING => match body::<StopLoggingRequest>(req) {
                Ok(r) => match self.stop_logging(&r.file) {
                    Ok(()) => ok(),
                    Err(e) => error(500, e),
                },
                Err(reply) => reply,
            },
            proto::READ_LOGS => match body::<ReadLogsRequest>(req) {
                Ok(r) => {
                    if let Err(e) = logging::check_container_id(&r.info.container_id) {
                        return error(400, e);
                    }
                    Reply::Stream(Box::new(r))
                }
                Err(reply) => reply,
            },
            other => error(404, format!("{other}: no such method")),
        }
    }

    fn start_logging(&self, r: &StartLoggingRequest) -> Result<(), String> {
        let id = r.info.container_id.as_str();
        logging::check_container_id(id)?;
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("scribe plugin is shutting down".into());
        }
        if self.sessions().contains_key(&r.file) {
            return Err(format!("already logging to {}", r.file));
        }
        let a = &self.args;
        let opts = logging::file_options(a.driver, &a.log_opts, &r.info.config)
            .map_err(|e| format!("container {id}: {e}"))?;
        let writer = logging::open_writer(a.driver, &a.log_root, &a.namespace, &r.info, &opts)?;
        let records = ContainerLog::open(&a.log_root, &a.namespace, id)
            .map_err(|e| format!("container {id}: records: {e}"))?;
        let fifo = logging::open_fifo(&r.file).map_err(|e| format!("container {id}: {e}"))?;
        let wake = Arc::new(Wake::new().map_err(|e| format!("eventfd: {e}"))?);
        let mut start = ContainerRecord::new(id, ContainerEvent::Start, ContainerStatus::Running);
        start.image = Some(r.info.container_image_name.clone()).filter(|s| !s.is_empty());
        let mut command: Vec<String> = Vec::new();
        if !r.info.container_entrypoint.is_empty() {
            command.push(r.info.container_entrypoint.clone());
        }
        command.extend(r.info.container_args.iter().cloned());
        start.command = Some(command).filter(|c| !c.is_empty());
        let start = Arc::new(Mutex::new(Some(start)));
        let records = Arc::new(records);
        let first = {
            let start = start.clone();
            let records = records.clone();
            let id = id.to_string();
            Box::new(move || write_start(&start, &records, &id)) as Box<dyn FnMut() + Send>
        };
        let thread = {
            let wake = wake.clone();
            let owned = id.to_string();
            std::thread::Builder::new()
                .name(format!("fifo-{}", &id[..id.len().min(12)]))
                .spawn(move || logging::pump(fifo, wake, writer, owned, first))
                .map_err(|e| format!("container {id}: starting its thread: {e}"))?
        };
        self.sessions().insert(
            r.file.clone(),
            Session {
                container: id.to_string(),
                wake,
                thread,
                start,
                read: Arc::new(AtomicBool::new(false)),
            },
        );
        Ok(())
    }

    fn stop_logging(&self, file: &str) -> Result<(), String> {
        let s = self
            .sessions()
            .remove(file)
            .ok_or_else(|| format!("not logging to {file}"))?;
        self.finish(s)
    }

    /// Reads what is left in the session's FIFO, then writes its records.
    fn finish(&self, s: Session) -> Result<(), String> {
        s.wake.stop();
        let summary = s
            .thread
            .join()
            .map_err(|_| format!("container {}: its FIFO thread panicked", s.container))?;
        let a = &self.args;
        let records = ContainerLog::open(&a.log_root, &a.namespace, &s.container)
            .map_err(|e| format!("container {}: records: {e}", s.container))?;
        // dockerd starts a logger around `docker logs` of a stopped container: a session that
        // carried nothing and was read from is such a reader, not a run of the container.
        if summary.entries == 0 && summary.dropped == 0 && s.read.load(Ordering::SeqCst) {
            return Ok(());
        }
        write_start(&s.start, &records, &s.container);
        let mut exit = ContainerRecord::new(
            s.container.as_str(),
            ContainerEvent::Exit,
            ContainerStatus::Stopped,
        );
        let mut why = "logging stopped; a log-driver plugin is not told the exit code".to_string();
        if summary.dropped > 0 || summary.bad > 0 {
            why.push_str(&format!(
                " ({} entries written, {} dropped, {} undecodable)",
                summary.entries, summary.dropped, summary.bad
            ));
        }
        exit.error = Some(why);
        records
            .append(&exit)
            .map_err(|e| format!("container {}: records: {e}", s.container))
    }

    /// Streams `/LogDriver.ReadLogs` to `conn` (the response head included).
    pub fn read_logs(&self, r: &ReadLogsRequest, conn: &UnixStream) -> io::Result<bool> {
        let id = r.info.container_id.as_str();
        for s in self.sessions().values().filter(|s| s.container == id) {
            s.read.store(true, Ordering::SeqCst);
        }
        let a = &self.args;
        let t = match readlogs::translate(&r.config) {
            Ok(t) => t,
            Err(e) => {
                http::write_json(&mut &*conn, 400, &err_body(e), false)?;
                return Ok(true);
            }
        };
        let log = match readlogs::find_log(&a.log_root, &a.namespace, id, a.driver) {
            Ok(l) => l,
            Err(e) => {
                http::write_json(&mut &*conn, 404, &err_body(e), false)?;
                return Ok(true);
            }
        };
        http::write_stream_head(&mut &*conn)?;
        let mut sink = readlogs::FrameSink::new(http::Chunked::new(conn));
        let pos = match scribe_io::reader::read(&log, &t.query, &mut sink) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("scribe plugin: ReadLogs of container {id}: {e}");
                return Ok(false);
            }
        };
        if t.follow && !sink.failed {
            scribe_io::reader::Sink::flush(&mut sink);
            let mut stop = || {
                self.shutting_down.load(Ordering::SeqCst) || !self.is_logging(id) || peer_gone(conn)
            };
            if let Err(e) = scribe_io::reader::follow(&log, pos, &t.query, &mut sink, &mut stop) {
                eprintln!("scribe plugin: ReadLogs of container {id}: {e}");
                return Ok(false);
            }
        }
        if sink.failed {
            return Ok(false);
        }
        sink.finish()?;
        Ok(true)
    }

    /// Serves one connection until the client closes it.
    pub fn serve(&self, conn: UnixStream) {
        let Ok(read_half) = conn.try_clone() else {
            return;
        };
        let mut r = BufReader::new(read_half);
        loop {
            let req = match http::read_request(&mut r) {
                Ok(req) => req,
                Err(HttpError::Closed) => return,
                Err(HttpError::Io(e)) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) {
                        eprintln!("scribe plugin: reading a request: {e}");
                    }
                    return;
                }
                Err(HttpError::Bad(status, msg)) => {
                    let _ = http::write_json(&mut &conn, status, &err_body(msg), true);
                    return;
                }
            };
            let keep = match self.handle(&req) {
                Reply::Json(status, body) => {
                    http::write_json(&mut &conn, status, &body, req.close).is_ok()
                }
                Reply::Stream(rl) => self.read_logs(&rl, &conn).unwrap_or(false),
            };
            if !keep || req.close {
                return;
            }
        }
    }

    /// Ends every session (reading what its FIFO holds): SIGTERM.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let all: Vec<Session> = self.sessions().drain().map(|(_, s)| s).collect();
        for s in all {
            let id = s.container.clone();
            if let Err(e) = self.finish(s) {
                eprintln!("scribe plugin: container {id}: {e}");
            }
        }
    }
}

fn write_start(start: &Mutex<Option<ContainerRecord>>, records: &ContainerLog, id: &str) {
    let rec = start.lock().unwrap_or_else(|p| p.into_inner()).take();
    // The record keeps the time of StartLogging, whenever it is written.
    if let Some(rec) = rec {
        if let Err(e) = records.append(&rec) {
            eprintln!("scribe plugin: container {id}: records: {e}");
        }
    }
}

/// Whether the client closed its end (a follower stops then).
fn peer_gone(conn: &UnixStream) -> bool {
    let mut fd = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one live pollfd, no timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Binds the socket: creates its directory, replaces a stale socket (one nobody answers on).
fn bind(path: &std::path::Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(format!("{} exists and is not a socket", path.display()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(format!(
                "{} is in use: another plugin serves it",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("removing stale socket {}: {e}", path.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("binding {}: {e}", path.display()))?;
    // dockerd runs as root; nobody else has anything to say to a log driver.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    Ok(l)
}

/// Runs `scribe plugin` until SIGTERM or SIGINT.
pub fn run(argv: &[String]) -> Result<(), String> {
    let args = opts::parse(argv)?;
    // A client that goes away mid-stream is a write error on its connection, not the end of
    // the plugin (`main` restored SIGPIPE's default for the reading commands).
    // SAFETY: setting a disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let socket = args.socket.clone();
    // Block the signals in every thread; one thread waits for them.
    // SAFETY: sigset operations on a local set, before any other thread starts.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let server = Arc::new(Server::new(args)?);
    let listener = bind(&socket)?;
    eprintln!("scribe plugin: serving on {}", socket.display());
    let lfd = listener.as_raw_fd();
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                // SAFETY: waits on a set that outlives the call.
                unsafe { libc::sigwait(&set, &mut sig) };
                stopping.store(true, Ordering::SeqCst);
                // Wakes the accept below (Linux returns EINVAL from accept on a shut listener).
                // SAFETY: the listener fd stays open until run returns.
                unsafe { libc::shutdown(lfd, libc::SHUT_RDWR) };
            })
            .map_err(|e| format!("starting the signal thread: {e}"))?;
    }
    for conn in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(c) => {
                let server = server.clone();
                let spawned = std::thread::Builder::new()
                    .name("conn".into())
                    .spawn(move || server.serve(c));
                if let Err(e) = spawned {
                    eprintln!("scribe plugin: starting a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                eprintln!("scribe plugin: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    eprintln!("scribe plugin: stopping: finishing every container's log");
    server.shutdown();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

#[cfg(test)]
mod tests;
