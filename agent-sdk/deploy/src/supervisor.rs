//! Agents as supervised child processes.
//!
//! [`Supervisor::start`] runs each [`ChildSpec`] as a child process and restarts it
//! when it dies, after a delay that doubles up to [`ChildSpec::max_restart_delay`]
//! and starts over once a child ran [`ChildSpec::stable_run`]. A child says it is
//! ready with one line on its standard output, `READY <url> <address>`; every other
//! line is passed on as [`SupervisorEvent::Output`]. [`Supervisor::stop`] closes each
//! child's standard input (the child's signal to stop), waits
//! [`ChildSpec::stop_grace`] and kills what is still running.
//!
//! Each child gets its own process group, so a terminal's Ctrl-C reaches the
//! supervisor only, which stops the children in order.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use wallets::Address;

/// How to run and restart one child.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// The child's name in events and logs (the agent's name).
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Where to write the running child's process id, if anywhere.
    pub pid_file: Option<PathBuf>,
    /// The first restart delay.
    pub restart_delay: Duration,
    /// The longest restart delay.
    pub max_restart_delay: Duration,
    /// A child that ran this long before dying restarts after `restart_delay` again.
    pub stable_run: Duration,
    /// How long a child has to stop after its standard input closes.
    pub stop_grace: Duration,
}

impl ChildSpec {
    /// A child running `program` with `args`, restarted after 1 s, doubling up to
    /// 30 s, starting over after a minute of running, given 10 s to stop.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Self {
            name: name.into(),
            program: program.into(),
            args,
            pid_file: None,
            restart_delay: Duration::from_secs(1),
            max_restart_delay: Duration::from_secs(30),
            stable_run: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
        }
    }

    /// Writes the running child's process id to `path`.
    #[must_use]
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }

    /// The first restart delay.
    #[must_use]
    pub fn restart_delay(mut self, delay: Duration) -> Self {
        self.restart_delay = delay;
        self
    }
}

/// What happens to the supervised children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorEvent {
    /// A child process started (`start` counts from 1).
    Started {
        /// The child.
        name: String,
        /// Its process id.
        pid: u32,
        /// Which start this is.
        start: u32,
    },
    /// A child could not be started; it is tried again after `retry_in`.
    SpawnFailed {
        /// The child.
        name: String,
        /// Why.
        error: String,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A child said `READY <url> <address>`.
    Ready {
        /// The child.
        name: String,
        /// Its process id.
        pid: u32,
        /// The URL it serves.
        url: String,
        /// The address it runs as.
        address: Address,
    },
    /// A line of a child's standard output (other than its READY line).
    Output {
        /// The child.
        name: String,
        /// The line.
        line: String,
    },
    /// A child died; it restarts after `restart_in`.
    Exited {
        /// The child.
        name: String,
        /// Its process id.
        pid: u32,
        /// How it ended ("exit code 3", "killed by SIGKILL").
        status: String,
        /// When it restarts.
        restart_in: Duration,
    },
    /// A child stopped after [`Supervisor::stop`].
    Stopped {
        /// The child.
        name: String,
        /// Its process id.
        pid: u32,
        /// How it ended; `None` when it did not stop in time and was killed.
        status: Option<String>,
    },
}

/// Children under supervision. Dropping it without [`Supervisor::stop`] kills them
/// (their processes are killed on drop).
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts every child, each under its own supervising task, and returns the
    /// supervisor and the stream of events (bounded; a slow reader holds the children's
    /// output back, never loses it).
    pub fn start(children: Vec<ChildSpec>) -> (Self, mpsc::Receiver<SupervisorEvent>) {
        let (stop, stop_rx) = watch::channel(false);
        let (events, rx) = mpsc::channel(256);
        let tasks = children
            .into_iter()
            .map(|c| tokio::spawn(supervise(c, stop_rx.clone(), events.clone())))
            .collect();
        (Self { stop, tasks }, rx)
    }

    /// Stops every child (standard input closed, then killed after its grace time)
    /// and waits until all are gone.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Runs `child` until `stop`, restarting it when it dies.
async fn supervise(
    child: ChildSpec,
    mut stop: watch::Receiver<bool>,
    events: mpsc::Sender<SupervisorEvent>,
) {
    let name = child.name.as_str();
    let mut delay = child.restart_delay;
    let mut starts: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        starts += 1;
        let started = Instant::now();
        let spawned = tokio::process::Command::new(&child.program)
            .args(&child.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let mut proc = match spawned {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "agora::up", agent = name, error = %e, "cannot start the agent process");
                let _ = events
                    .send(SupervisorEvent::SpawnFailed {
                        name: name.to_owned(),
                        error: e.to_string(),
                        retry_in: delay,
                    })
                    .await;
                if wait_or_stop(&mut stop, delay).await {
                    break;
                }
                delay = (delay * 2).min(child.max_restart_delay);
                continue;
            }
        };
        let pid = proc.id().unwrap_or_default();
        if let Some(file) = &child.pid_file {
            if let Err(e) = std::fs::write(file, format!("{pid}\n")) {
                tracing::warn!(target: "agora::up", agent = name, error = %e, "pid file not written");
            }
        }
        tracing::info!(target: "agora::up", agent = name, pid, start = starts, "agent process started");
        let _ = events
            .send(SupervisorEvent::Started {
                name: name.to_owned(),
                pid,
                start: starts,
            })
            .await;
        let stdin = proc.stdin.take();
        let reader = proc
            .stdout
            .take()
            .map(|out| tokio::spawn(read_output(name.to_owned(), pid, out, events.clone())));
        let exited = tokio::select! {
            status = proc.wait() => Some(status),
            _ = stop.wait_for(|s| *s) => None,
        };
        match exited {
            Some(status) => {
                let status = match status {
                    Ok(s) => describe_exit(s),
                    Err(e) => format!("unknown status ({e})"),
                };
                remove_pid_file(&child);
                // Every line the child wrote comes before its exit.
                if let Some(r) = reader {
                    let _ = r.await;
                }
                if *stop.borrow() {
                    tracing::info!(target: "agora::up", agent = name, pid, %status, "agent exited while stopping");
                    let _ = events
                        .send(SupervisorEvent::Stopped {
                            name: name.to_owned(),
                            pid,
                            status: Some(status),
                        })
                        .await;
                    break;
                }
                if started.elapsed() >= child.stable_run {
                    delay = child.restart_delay;
                }
                tracing::warn!(target: "agora::up", agent = name, pid, %status, restart_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "agent process died; restarting");
                let _ = events
                    .send(SupervisorEvent::Exited {
                        name: name.to_owned(),
                        pid,
                        status,
                        restart_in: delay,
                    })
                    .await;
                drop(stdin);
                if wait_or_stop(&mut stop, delay).await {
                    break;
                }
                delay = (delay * 2).min(child.max_restart_delay);
            }
            None => {
                // Closing its standard input asks the agent to stop.
                drop(stdin);
                let status = match tokio::time::timeout(child.stop_grace, proc.wait()).await {
                    Ok(Ok(status)) => {
                        let status = describe_exit(status);
                        tracing::info!(target: "agora::up", agent = name, pid, %status, "agent stopped");
                        Some(status)
                    }
                    _ => {
                        tracing::warn!(target: "agora::up", agent = name, pid, "agent did not stop in time; killing it");
                        let _ = proc.kill().await;
                        None
                    }
                };
                remove_pid_file(&child);
                if let Some(r) = reader {
                    let _ = r.await;
                }
                let _ = events
                    .send(SupervisorEvent::Stopped {
                        name: name.to_owned(),
                        pid,
                        status,
                    })
                    .await;
                break;
            }
        }
    }
}

/// Turns a child's standard output into events.
async fn read_output(
    name: String,
    pid: u32,
    out: tokio::process::ChildStdout,
    events: mpsc::Sender<SupervisorEvent>,
) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let event = match parse_ready(&line) {
            Some(Ok((url, address))) => SupervisorEvent::Ready {
                name: name.clone(),
                pid,
                url,
                address,
            },
            Some(Err(())) => {
                tracing::warn!(target: "agora::up", agent = %name, line, "bad READY line");
                SupervisorEvent::Output {
                    name: name.clone(),
                    line,
                }
            }
            None => SupervisorEvent::Output {
                name: name.clone(),
                line,
            },
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
}

/// `READY <url> <address>`: `None` for any other line, `Err` for a READY line
/// without a valid address.
fn parse_ready(line: &str) -> Option<Result<(String, Address), ()>> {
    let mut words = line.split_whitespace();
    if words.next() != Some("READY") {
        return None;
    }
    let url = words.next().unwrap_or_default().to_owned();
    Some(match words.next().map(str::parse::<Address>) {
        Some(Ok(address)) if !url.is_empty() => Ok((url, address)),
        _ => Err(()),
    })
}

fn remove_pid_file(child: &ChildSpec) {
    if let Some(file) = &child.pid_file {
        let _ = std::fs::remove_file(file);
    }
}

/// Sleeps `delay`; true if `stop` came first.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    let stopped = tokio::select! {
        () = tokio::time::sleep(delay) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// How a process ended, in words.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(9)) => "killed by SIGKILL".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "unknown status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        let a = "0x000000000000000000000000000000000000dEaD";
        assert_eq!(
            parse_ready(&format!("READY ws://127.0.0.1:9 {a}")),
            Some(Ok(("ws://127.0.0.1:9".into(), a.parse().unwrap())))
        );
        assert_eq!(parse_ready("READY ws://x nope"), Some(Err(())));
        assert_eq!(parse_ready("READY"), Some(Err(())));
        assert_eq!(parse_ready("hello"), None);
    }

    fn sh(name: &str, script: &str) -> ChildSpec {
        ChildSpec::new(name, "/bin/sh", vec!["-c".into(), script.into()])
            .restart_delay(Duration::from_millis(10))
    }

    async fn next(rx: &mut mpsc::Receiver<SupervisorEvent>) -> SupervisorEvent {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("an event within 30 s")
            .expect("the supervisor is running")
    }

    /// A child that dies is restarted with a doubling delay; its output and its READY
    /// line come through; stopping closes its stdin and it exits by itself.
    #[tokio::test]
    async fn a_dying_child_restarts_with_a_doubling_delay_and_stops_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        // Dies on its first two runs; on the third says READY and waits for stdin to close.
        let script = format!(
            "echo run >> {runs}; n=$(wc -l < {runs}); echo hello $n; \
             if [ $n -lt 3 ]; then exit 3; fi; \
             echo READY ws://127.0.0.1:1 0x000000000000000000000000000000000000dEaD; cat >/dev/null; exit 0",
            runs = runs.display()
        );
        let pid_file = dir.path().join("pid");
        let (sup, mut rx) = Supervisor::start(vec![sh("a", &script).pid_file(&pid_file)]);
        let mut delays = Vec::new();
        let mut outputs = Vec::new();
        let ready_pid = loop {
            match next(&mut rx).await {
                SupervisorEvent::Exited {
                    status, restart_in, ..
                } => {
                    assert_eq!(status, "exit code 3");
                    delays.push(restart_in);
                }
                SupervisorEvent::Output { line, .. } => outputs.push(line),
                SupervisorEvent::Ready { pid, address, .. } => {
                    assert_eq!(
                        address,
                        "0x000000000000000000000000000000000000dEaD"
                            .parse()
                            .unwrap()
                    );
                    break pid;
                }
                SupervisorEvent::Started { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(
            delays,
            [Duration::from_millis(10), Duration::from_millis(20)]
        );
        assert_eq!(outputs, ["hello 1", "hello 2", "hello 3"]);
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            ready_pid.to_string()
        );
        let stopping = tokio::spawn(sup.stop());
        loop {
            if let SupervisorEvent::Stopped { pid, status, .. } = next(&mut rx).await {
                assert_eq!(pid, ready_pid);
                assert_eq!(status.as_deref(), Some("exit code 0"));
                break;
            }
        }
        stopping.await.unwrap();
        assert!(!pid_file.exists(), "the pid file goes with the child");
    }

    /// A child that ignores its closed stdin is killed after its grace time.
    #[tokio::test]
    async fn a_child_that_does_not_stop_is_killed() {
        let mut spec = sh("stubborn", "echo READY ws://x 0x000000000000000000000000000000000000dEaD; while :; do sleep 1; done");
        spec.stop_grace = Duration::from_millis(100);
        let (sup, mut rx) = Supervisor::start(vec![spec]);
        loop {
            if matches!(next(&mut rx).await, SupervisorEvent::Ready { .. }) {
                break;
            }
        }
        let stopping = tokio::spawn(sup.stop());
        loop {
            if let SupervisorEvent::Stopped { status, .. } = next(&mut rx).await {
                assert_eq!(status, None, "killed, not stopped");
                break;
            }
        }
        stopping.await.unwrap();
    }

    /// A program that does not exist is reported and retried, not a crash.
    #[tokio::test]
    async fn a_missing_program_is_reported_and_retried() {
        let spec = ChildSpec::new("ghost", "/nonexistent/agora", vec![])
            .restart_delay(Duration::from_millis(10));
        let (sup, mut rx) = Supervisor::start(vec![spec]);
        let mut retries = Vec::new();
        while retries.len() < 2 {
            if let SupervisorEvent::SpawnFailed {
                retry_in, error, ..
            } = next(&mut rx).await
            {
                assert!(error.contains("No such file"), "{error}");
                retries.push(retry_in);
            }
        }
        assert_eq!(
            retries,
            [Duration::from_millis(10), Duration::from_millis(20)]
        );
        sup.stop().await;
    }
}
