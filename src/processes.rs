//! Background work of sandboxes: executions and commands that run while the caller goes on, and
//! are listed, read and killed later by id.
//!
//! The caller hands over the run as a future (built over the [`crate::exec::Executor`], so it
//! goes through the same admission, budgets and timeout as any execution); this module owns the
//! records, a kill switch per run and the output seen so far. Dropping the run's future is how a
//! run is killed: that drops its store, which frees the instance even when the guest is parked
//! in a host call. Each record is written to `<state dir>/processes/<id>.json` when the run
//! starts and when it ends, so a restarted server still lists it; one that was running when the
//! server stopped is reported `failed`, with a note.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engine::{ExecResult, OutputTap, OutputTaps, Termination};
use crate::exec::ExecError;

/// Runs of one sandbox that may be running at once; more are refused.
pub const MAX_RUNNING: usize = 16;
/// Finished runs kept per sandbox (the oldest are forgotten first).
pub const MAX_KEPT: usize = 100;

/// Where a background run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStatus {
    /// Started (possibly still waiting for an instance slot) and not ended.
    Running,
    /// Exited with status 0.
    Completed,
    /// Exited with another status, crashed, ran out of memory, or was lost in a restart.
    Failed,
    /// Stopped by a kill request, or by its sandbox being paused or deleted.
    Killed,
    /// Stopped by its time (or CPU) budget.
    Timeout,
}

/// What a background run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessKind {
    /// Code in a language (`/execute/background`).
    Code,
    /// A shell command (`/commands/background`).
    Command,
}

/// One background run, as listed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The id callers use (`proc_…` for code, `cmd_…` for commands).
    pub process_id: String,
    /// Same run, as the execution id some clients read.
    pub execution_id: String,
    /// A small number, unique in this server's life, for clients that show a pid.
    pub pid: u32,
    /// The caller's name for it, or its language / command line.
    pub name: String,
    /// Code or command.
    pub kind: ProcessKind,
    /// The language that runs it.
    pub language: String,
    /// The command line (commands only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub command: Option<String>,
    /// Where it stands.
    pub status: ProcessStatus,
    /// Its exit status once it ended.
    pub exit_code: Option<i32>,
    /// When it was started.
    pub start_time: DateTime<Utc>,
    /// When it ended.
    pub end_time: Option<DateTime<Utc>>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
    /// Standard output so far (capped as any execution's).
    pub stdout: String,
    /// Standard error so far, with the host's note when it stopped the run.
    pub stderr: String,
}

/// What to record about a run being started.
pub struct ProcessSpec {
    /// Code or command.
    pub kind: ProcessKind,
    /// The caller's name, if any.
    pub name: Option<String>,
    /// The language that runs it.
    pub language: String,
    /// The command line (commands only).
    pub command: Option<String>,
}

/// Why a background operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No run with that id in the sandbox.
    #[error("no background process {0}")]
    NotFound(String),
    /// The sandbox already has [`MAX_RUNNING`] runs going.
    #[error(
        "the sandbox already runs {MAX_RUNNING} background processes; wait for one or kill one"
    )]
    TooMany,
    /// The record could not be written, so the run was not started.
    #[error("recording the background process failed")]
    Record(#[source] std::io::Error),
}

struct Entry {
    record: ProcessRecord,
    /// Set while running: cancelling it kills the run.
    kill: Option<CancellationToken>,
    /// Cancelled once the run's end is recorded.
    ended: CancellationToken,
    /// Output as it is written, while running.
    live: Option<LiveOutput>,
}

#[derive(Clone, Default)]
struct LiveOutput {
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl LiveOutput {
    fn taps(&self) -> OutputTaps {
        let tap = |buffer: &Arc<Mutex<String>>| -> OutputTap {
            let buffer = buffer.clone();
            Arc::new(move |bytes: &[u8]| {
                lock(&buffer).push_str(&String::from_utf8_lossy(bytes));
            })
        };
        OutputTaps {
            stdout: Some(tap(&self.stdout)),
            stderr: Some(tap(&self.stderr)),
            ..OutputTaps::default()
        }
    }
}

#[derive(Default)]
struct SandboxRuns {
    /// Whether the records on disk were read.
    loaded: bool,
    dir: PathBuf,
    runs: BTreeMap<String, Entry>,
}

impl SandboxRuns {
    /// Runs not ended yet.
    fn running(&self) -> usize {
        self.runs.values().filter(|e| e.kill.is_some()).count()
    }
}

/// The background runs of every sandbox.
#[derive(Clone, Default)]
pub struct Processes {
    inner: Arc<Mutex<HashMap<String, SandboxRuns>>>,
    next_pid: Arc<std::sync::atomic::AtomicU32>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a holder panicked; the records are still whole.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Processes {
    /// An empty registry.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            next_pid: Arc::new(std::sync::atomic::AtomicU32::new(1000)),
        }
    }

    fn runs<'a>(
        all: &'a mut HashMap<String, SandboxRuns>,
        sandbox: &str,
        state_dir: &Path,
    ) -> &'a mut SandboxRuns {
        let runs = all.entry(sandbox.to_string()).or_default();
        if !runs.loaded {
            runs.loaded = true;
            runs.dir = state_dir.join("processes");
            for record in load_records(&runs.dir) {
                runs.runs.insert(
                    record.process_id.clone(),
                    Entry {
                        record,
                        kill: None,
                        ended: ended_already(),
                        live: None,
                    },
                );
            }
        }
        runs
    }

    /// Starts `run` in the background for `sandbox` (whose state lives in `state_dir`);
    /// `run` gets the run's id and the taps its request must stream output to. -> the record
    /// as started.
    pub fn start<F>(
        &self,
        sandbox: &str,
        state_dir: &Path,
        spec: ProcessSpec,
        run: impl FnOnce(&str, OutputTaps) -> F,
    ) -> Result<ProcessRecord, ProcessError>
    where
        F: Future<Output = Result<ExecResult, ExecError>> + Send + 'static,
    {
        let prefix = match spec.kind {
            ProcessKind::Code => "proc",
            ProcessKind::Command => "cmd",
        };
        let id = format!(
            "{prefix}_{}",
            crate::ids::random_alphanumeric(16).to_lowercase()
        );
        let record = ProcessRecord {
            process_id: id.clone(),
            execution_id: id.clone(),
            pid: self
                .next_pid
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name: spec
                .name
                .filter(|n| !n.trim().is_empty())
                .or_else(|| spec.command.clone())
                .unwrap_or_else(|| spec.language.clone()),
            kind: spec.kind,
            language: spec.language,
            command: spec.command,
            status: ProcessStatus::Running,
            exit_code: None,
            start_time: Utc::now(),
            end_time: None,
            duration: None,
            stdout: String::new(),
            stderr: String::new(),
        };
        let kill = CancellationToken::new();
        let ended = CancellationToken::new();
        let live = LiveOutput::default();
        let dir = {
            let mut all = lock(&self.inner);
            let runs = Self::runs(&mut all, sandbox, state_dir);
            if runs.running() >= MAX_RUNNING {
                return Err(ProcessError::TooMany);
            }
            runs.runs.insert(
                id.clone(),
                Entry {
                    record: record.clone(),
                    kill: Some(kill.clone()),
                    ended: ended.clone(),
                    live: Some(live.clone()),
                },
            );
            prune(runs);
            runs.dir.clone()
        };
        // The record is on disk before the caller hears of the run; the sync happens outside
        // the registry's lock, which every sandbox shares.
        if let Err(e) = save_record(&dir, &record) {
            if let Some(runs) = lock(&self.inner).get_mut(sandbox) {
                runs.runs.remove(&id);
            }
            return Err(ProcessError::Record(e));
        }
        let future = run(&id, live.taps());
        let registry = self.clone();
        let sandbox = sandbox.to_string();
        let started = Instant::now();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = future => Some(outcome),
                () = kill.cancelled() => None,
            };
            registry.finish(&sandbox, &id, outcome, started);
            ended.cancel();
        });
        Ok(record)
    }

    /// Records how run `id` ended (`None`: killed).
    fn finish(
        &self,
        sandbox: &str,
        id: &str,
        outcome: Option<Result<ExecResult, ExecError>>,
        started: Instant,
    ) {
        let mut all = lock(&self.inner);
        let Some(runs) = all.get_mut(sandbox) else {
            return; // the sandbox was deleted meanwhile
        };
        let Some(entry) = runs.runs.get_mut(id) else {
            return;
        };
        let live = entry.live.take().unwrap_or_default();
        entry.kill = None;
        let record = &mut entry.record;
        record.end_time = Some(Utc::now());
        record.duration = Some(started.elapsed().as_secs_f64());
        match outcome {
            Some(Ok(result)) => {
                record.status = status_of(&result);
                record.exit_code = Some(result.exit_code);
                record.stdout = result.stdout;
                record.stderr = result.stderr;
            }
            Some(Err(e)) => {
                record.status = ProcessStatus::Failed;
                record.exit_code = Some(1);
                record.stdout = std::mem::take(&mut *lock(&live.stdout));
                record.stderr = format!(
                    "{}wasmbox: the run could not start: {}\n",
                    lock(&live.stderr),
                    crate::describe_error(&e)
                );
            }
            None => {
                record.status = ProcessStatus::Killed;
                record.exit_code = Some(crate::engine::EXIT_MEMORY);
                record.stdout = std::mem::take(&mut *lock(&live.stdout));
                record.stderr = format!("{}\nwasmbox: killed\n", lock(&live.stderr));
            }
        }
        let (dir, record) = (runs.dir.clone(), record.clone());
        drop(all);
        if let Err(e) = save_record(&dir, &record) {
            tracing::warn!(error = %e, process = id, "recording a finished background process failed");
        }
    }

    /// The sandbox's runs, oldest first, with the output running ones wrote so far.
    pub fn list(&self, sandbox: &str, state_dir: &Path) -> Vec<ProcessRecord> {
        let mut all = lock(&self.inner);
        let runs = Self::runs(&mut all, sandbox, state_dir);
        let mut list: Vec<ProcessRecord> = runs.runs.values().map(snapshot).collect();
        list.sort_by_key(|r| (r.start_time, r.pid));
        list
    }

    /// One run of the sandbox.
    pub fn get(
        &self,
        sandbox: &str,
        state_dir: &Path,
        id: &str,
    ) -> Result<ProcessRecord, ProcessError> {
        let mut all = lock(&self.inner);
        let runs = Self::runs(&mut all, sandbox, state_dir);
        runs.runs
            .get(id)
            .map(snapshot)
            .ok_or_else(|| ProcessError::NotFound(id.to_string()))
    }

    /// Kills run `id` if it is running; -> its record once it has stopped (a run that already
    /// ended is returned as it ended).
    pub async fn kill(
        &self,
        sandbox: &str,
        state_dir: &Path,
        id: &str,
    ) -> Result<ProcessRecord, ProcessError> {
        let (kill, ended) = {
            let mut all = lock(&self.inner);
            let runs = Self::runs(&mut all, sandbox, state_dir);
            let entry = runs
                .runs
                .get(id)
                .ok_or_else(|| ProcessError::NotFound(id.to_string()))?;
            (entry.kill.clone(), entry.ended.clone())
        };
        if let Some(kill) = kill {
            kill.cancel();
            // The task records the end right after the run's future is dropped.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), ended.cancelled()).await;
        }
        self.get(sandbox, state_dir, id)
    }

    /// Kills every running run of the sandbox (it is being paused or deleted).
    pub fn kill_sandbox(&self, sandbox: &str) {
        let all = lock(&self.inner);
        if let Some(runs) = all.get(sandbox) {
            for entry in runs.runs.values() {
                if let Some(token) = &entry.kill {
                    token.cancel();
                }
            }
        }
    }

    /// Kills the sandbox's runs and forgets them (it was deleted, with its state directory).
    pub fn remove_sandbox(&self, sandbox: &str) {
        self.kill_sandbox(sandbox);
        lock(&self.inner).remove(sandbox);
    }

    /// How many runs of `sandbox` are going.
    pub fn running_in(&self, sandbox: &str) -> usize {
        lock(&self.inner)
            .get(sandbox)
            .map_or(0, |runs| runs.running())
    }

    /// How many runs are going, server-wide.
    pub fn running(&self) -> usize {
        lock(&self.inner).values().map(SandboxRuns::running).sum()
    }
}

/// The `ended` token of a run that ended before this server started.
fn ended_already() -> CancellationToken {
    let token = CancellationToken::new();
    token.cancel();
    token
}

/// A record with the live output of a running run.
fn snapshot(entry: &Entry) -> ProcessRecord {
    let mut record = entry.record.clone();
    if let Some(live) = &entry.live {
        record.stdout = lock(&live.stdout).clone();
        record.stderr = lock(&live.stderr).clone();
    }
    record
}

/// How a run that ended with `result` is listed.
pub fn status_of(result: &ExecResult) -> ProcessStatus {
    match result.termination {
        Termination::Exited if result.exit_code == 0 => ProcessStatus::Completed,
        Termination::TimedOut | Termination::OutOfFuel => ProcessStatus::Timeout,
        Termination::Cancelled => ProcessStatus::Killed,
        _ => ProcessStatus::Failed,
    }
}

/// Forgets the oldest finished runs beyond [`MAX_KEPT`].
fn prune(runs: &mut SandboxRuns) {
    let mut finished: Vec<(DateTime<Utc>, String)> = runs
        .runs
        .values()
        .filter(|e| e.kill.is_none())
        .map(|e| (e.record.start_time, e.record.process_id.clone()))
        .collect();
    if finished.len() <= MAX_KEPT {
        return;
    }
    finished.sort();
    for (_, id) in finished.iter().take(finished.len() - MAX_KEPT) {
        runs.runs.remove(id);
        let _ = std::fs::remove_file(record_path(&runs.dir, id));
    }
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn save_record(dir: &Path, record: &ProcessRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    crate::atomic_write::write_atomic(&record_path(dir, &record.process_id), &json)
}

/// The records under `dir`; runs that were going when the server stopped are failed now.
fn load_records(dir: &Path) -> Vec<ProcessRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(mut record) = serde_json::from_slice::<ProcessRecord>(&bytes) else {
            tracing::warn!(path = %path.display(), "ignoring an unreadable background-process record");
            continue;
        };
        if record.status == ProcessStatus::Running {
            record.status = ProcessStatus::Failed;
            record
                .stderr
                .push_str("\nwasmbox: the server restarted while this process ran\n");
            if let Err(e) = save_record(dir, &record) {
                tracing::warn!(error = %e, "updating a background-process record failed");
            }
        }
        records.push(record);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn result(exit_code: i32, termination: Termination) -> ExecResult {
        ExecResult {
            stdout: "out\n".into(),
            stderr: String::new(),
            exit_code,
            termination,
            stdout_truncated: false,
            stderr_truncated: false,
            duration: Duration::from_millis(1),
            outputs: Vec::new(),
            usage: Default::default(),
        }
    }

    fn spec() -> ProcessSpec {
        ProcessSpec {
            kind: ProcessKind::Code,
            name: Some("job".into()),
            language: "python".into(),
            command: None,
        }
    }

    async fn wait_until_ended(p: &Processes, dir: &Path, id: &str) -> ProcessRecord {
        for _ in 0..400 {
            let record = p.get("s", dir, id).expect("record");
            if record.status != ProcessStatus::Running {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{id} did not end");
    }

    #[tokio::test]
    async fn a_run_is_listed_running_then_with_its_result_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Processes::new();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let started = p
            .start("s", dir.path(), spec(), |_, _| async move {
                let _ = wait.await;
                Ok(result(0, Termination::Exited))
            })
            .expect("start");
        assert_eq!(started.status, ProcessStatus::Running);
        assert_eq!(started.name, "job");
        let listed = p.list("s", dir.path());
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, ProcessStatus::Running);
        go.send(()).expect("send");
        let ended = wait_until_ended(&p, dir.path(), &started.process_id).await;
        assert_eq!(ended.status, ProcessStatus::Completed);
        assert_eq!(ended.exit_code, Some(0));
        assert_eq!(ended.stdout, "out\n");
        // A new registry (a restarted server) reads the record back.
        let again = Processes::new().get("s", dir.path(), &started.process_id);
        assert_eq!(again.expect("reloaded").status, ProcessStatus::Completed);
    }

    #[tokio::test]
    async fn kill_stops_a_run_and_keeps_its_output_so_far() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Processes::new();
        let started = p
            .start("s", dir.path(), spec(), |_, taps| async move {
                if let Some(tap) = &taps.stdout {
                    tap(b"tick\n");
                }
                std::future::pending::<()>().await;
                Ok(result(0, Termination::Exited))
            })
            .expect("start");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            p.get("s", dir.path(), &started.process_id)
                .expect("get")
                .stdout,
            "tick\n"
        );
        let killed = p
            .kill("s", dir.path(), &started.process_id)
            .await
            .expect("kill");
        assert_eq!(killed.status, ProcessStatus::Killed);
        assert!(killed.stdout.starts_with("tick\n"), "{killed:?}");
        assert!(matches!(
            p.kill("s", dir.path(), "proc_nope").await,
            Err(ProcessError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn a_run_lost_in_a_restart_is_failed_and_the_running_cap_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Processes::new();
        let mut ids = Vec::new();
        for _ in 0..MAX_RUNNING {
            let started = p
                .start("s", dir.path(), spec(), |_, _| std::future::pending())
                .expect("start");
            ids.push(started.process_id);
        }
        assert!(matches!(
            p.start("s", dir.path(), spec(), |_, _| std::future::pending()),
            Err(ProcessError::TooMany)
        ));
        assert_eq!(p.running(), MAX_RUNNING);
        let reloaded = Processes::new()
            .get("s", dir.path(), &ids[0])
            .expect("reloaded");
        assert_eq!(reloaded.status, ProcessStatus::Failed);
        assert!(reloaded.stderr.contains("restarted"), "{reloaded:?}");
        p.kill_sandbox("s");
    }
}
