//! Background jobs (`list &`): requests started by `spawn_start` that the instance waits for
//! later (`spawn_wait`), looks at (`spawn_poll`) or stops (`spawn_kill`).
//!
//! A job is one tokio task that runs the request's stages to their end. Its stages count
//! against the tree's limits like any request's, for as long as they run. The task is also
//! registered with the execution's [`Tree`](super::Tree), which aborts it when the top-level
//! program ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wasmbox_spawn_abi::{Request, Response};

use super::request::{start_request, ChildContext};

/// What `spawn_wait`, `spawn_poll` and `spawn_kill` answer for a handle this instance does not
/// have (never started, or already waited for).
pub(super) const NO_SUCH_JOB: i32 = -4;

/// Exit status of a job whose task failed without a status of its own (as SIGABRT).
const JOB_PANICKED: i32 = 134;

/// The background jobs one instance started, by handle.
#[derive(Default)]
pub(crate) struct JobTable {
    next: u32,
    jobs: BTreeMap<u32, Job>,
    /// Signalled whenever one of the jobs ends, for `spawn_wait(-1)`.
    ended: Arc<Notify>,
}

struct Job {
    task: JoinHandle<Response>,
    /// Set by the task as its last step, before it signals `JobTable::ended`: the task itself
    /// counts as finished only a moment later.
    done: Arc<AtomicBool>,
    stages: usize,
    /// Set by `spawn_kill`: every stage then reports this status (128 + the signal).
    killed: Option<i32>,
}

impl Job {
    fn has_ended(&self) -> bool {
        self.killed.is_some() || self.done.load(Ordering::SeqCst) || self.task.is_finished()
    }

    /// Its result, once [`Job::has_ended`] (or waiting for that).
    async fn result(self, handle: u32) -> Response {
        let mut response = match self.killed {
            Some(status) => {
                self.task.abort();
                Response {
                    statuses: vec![status; self.stages],
                    ..Response::default()
                }
            }
            None => match self.task.await {
                Ok(response) => response,
                Err(_) => Response {
                    statuses: vec![JOB_PANICKED; self.stages],
                    ..Response::default()
                },
            },
        };
        response.job = Some(handle);
        response
    }
}

/// What a job's end looks like to `spawn_kill`.
pub(super) enum Signalled {
    /// The job was running (a signal has now stopped it).
    WasRunning,
    /// The job had already ended; nothing changed.
    AlreadyEnded,
}

impl JobTable {
    /// Starts `req` in the background: the answer names the job, or is the refusal (nothing
    /// started).
    pub(super) async fn start(&mut self, ctx: ChildContext, req: Request) -> Response {
        let tree = ctx.tree();
        let stages = req.stages.len();
        let started = match start_request(ctx, req).await {
            Ok(started) => started,
            Err(refusal) => return refusal,
        };
        let ended = self.ended.clone();
        let done = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let done = done.clone();
            async move {
                let response = started.finish().await;
                done.store(true, Ordering::SeqCst);
                ended.notify_one();
                response
            }
        });
        tree.register_job(task.abort_handle());
        let handle = self.next;
        self.next = self.next.wrapping_add(1);
        self.jobs.insert(
            handle,
            Job {
                task,
                done,
                stages,
                killed: None,
            },
        );
        Response {
            job: Some(handle),
            ..Response::default()
        }
    }

    /// Is the job still running? `None`: no such job.
    pub(super) fn running(&self, handle: u32) -> Option<bool> {
        self.jobs.get(&handle).map(|j| !j.has_ended())
    }

    /// Stops a running job: its stages report `128 + signal`.
    pub(super) fn kill(&mut self, handle: u32, signal: i32) -> Option<Signalled> {
        let job = self.jobs.get_mut(&handle)?;
        if job.has_ended() {
            return Some(Signalled::AlreadyEnded);
        }
        job.task.abort();
        job.killed = Some(128 + signal);
        self.ended.notify_one();
        Some(Signalled::WasRunning)
    }
}

/// What `spawn_wait` needs from the instance's table, one step at a time: the table lives in
/// the store, which cannot stay borrowed while the guest's call waits.
pub(super) enum WaitStep {
    /// The job has been taken out of the table; its result once it ends.
    Job(u32, JobWait),
    /// No job has ended yet: wait on this, then ask again.
    Pending(Arc<Notify>),
    /// No such job (or, for any job, none at all).
    NoSuchJob,
}

/// A job taken out of its table, to be waited for.
pub(super) struct JobWait(Job);

impl JobWait {
    pub(super) async fn result(self, handle: u32) -> Response {
        self.0.result(handle).await
    }
}

impl JobTable {
    /// The next step of waiting for `handle`, or (`None`) for any job, taking one that has
    /// already ended first.
    pub(super) fn wait_step(&mut self, handle: Option<u32>) -> WaitStep {
        let handle = match handle {
            Some(h) => h,
            None => match self.jobs.iter().find(|(_, j)| j.has_ended()) {
                Some((h, _)) => *h,
                None if self.jobs.is_empty() => return WaitStep::NoSuchJob,
                None => return WaitStep::Pending(self.ended.clone()),
            },
        };
        match self.jobs.remove(&handle) {
            Some(job) => WaitStep::Job(handle, JobWait(job)),
            None => WaitStep::NoSuchJob,
        }
    }
}
