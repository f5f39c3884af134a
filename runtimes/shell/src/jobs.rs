//! Background jobs (`list &`), `$!`, and what `wait`, `jobs` and `kill` need.
//!
//! A background list runs concurrently with the shell, as a request started through
//! [`Spawner::start`](crate::spawn::Spawner::start): a pipeline of external commands directly,
//! anything else (builtins, functions, compound commands, `a && b`) as a child shell given the
//! shell's functions, variables and options (see [`Shell::child_source`]). Its standard input is
//! `/dev/null` unless it redirects it, as in a non-interactive bash; its output goes where the
//! shell's goes.
//!
//! The table follows bash's non-interactive behaviour: once a foreground command has run, jobs
//! that ended meanwhile leave the table silently (`jobs` no longer lists them, `wait -n` does
//! not see them), but `wait PID` still reports their status.

use crate::ast::{AndOr, Command, Compound, Program};
use crate::exec::{In, Out, Shell};
use crate::spawn::{JobHandle, Request, Response};

/// `$!` of the first background job (later ones count up).
const FIRST_JOB_PID: u32 = 1000;

/// How often a background start refused at the limits is tried again, each time after one of
/// the shell's own jobs has ended (or a short pause when none runs).
const MAX_START_RETRIES: u32 = 16;

/// One background job.
#[derive(Clone)]
pub struct Job {
    /// What `$!` shows and `wait`/`kill` take.
    pub pid: u32,
    /// `%N`, as `jobs` shows it.
    pub number: usize,
    /// The command, as `jobs` shows it (`sleep 1 &`).
    pub text: String,
    pub state: JobState,
}

#[derive(Clone)]
pub enum JobState {
    /// Started through the spawner, not waited for yet.
    Running(JobHandle),
    /// Ended with this status.
    Done(i32),
}

/// The jobs of one shell.
#[derive(Default)]
pub struct Jobs {
    /// The job table, oldest first.
    pub table: Vec<Job>,
    /// Jobs that ended and left the table: (pid, status), so `wait PID` still reports them.
    pub reaped: Vec<(u32, i32)>,
    /// `$!`.
    pub last_pid: Option<u32>,
    next_pid: Option<u32>,
}

/// The parent's jobs while an in-process subshell runs.
pub struct SavedJobs {
    table: Vec<Job>,
    reaped: Vec<(u32, i32)>,
    last_pid: Option<u32>,
}

impl Jobs {
    /// Entering an in-process subshell: `( … )` starts without jobs (it can neither list nor
    /// wait for its parent's), a command substitution (`keep`) still sees them, as in bash;
    /// `$!` stays.
    pub fn enter_subshell(&mut self, keep: bool) -> SavedJobs {
        if keep {
            return SavedJobs {
                table: self.table.clone(),
                reaped: self.reaped.clone(),
                last_pid: self.last_pid,
            };
        }
        SavedJobs {
            table: std::mem::take(&mut self.table),
            reaped: std::mem::take(&mut self.reaped),
            last_pid: self.last_pid,
        }
    }

    /// Leaving it: jobs it started and left running are nobody's now; they go on (the host
    /// stops whatever is left when the execution ends) but are not this shell's to wait for.
    pub fn leave_subshell(&mut self, saved: SavedJobs) {
        self.table = saved.table;
        self.reaped = saved.reaped;
        self.last_pid = saved.last_pid;
    }

    fn new_pid(&mut self) -> u32 {
        let pid = self.next_pid.unwrap_or(FIRST_JOB_PID);
        self.next_pid = Some(pid + 1);
        pid
    }

    /// The number the next job gets: one more than the highest in the table (bash reuses
    /// numbers once the table is empty).
    fn new_number(&self) -> usize {
        self.table.iter().map(|j| j.number).max().unwrap_or(0) + 1
    }

    /// Does any job still run (as far as the shell knows)?
    pub fn any_running(&self) -> bool {
        self.table
            .iter()
            .any(|j| matches!(j.state, JobState::Running(_)))
    }

    /// The table index of the job an operand names: a pid, `%N`, `%%`/`%+` (the current job),
    /// `%-` (the previous one) or `%STRING` (the job whose command starts with it).
    pub fn find(&self, spec: &str) -> Option<usize> {
        match spec.strip_prefix('%') {
            None => {
                let pid: u32 = spec.parse().ok()?;
                self.table.iter().position(|j| j.pid == pid)
            }
            Some("" | "%" | "+") => self.table.len().checked_sub(1),
            Some("-") => self.table.len().checked_sub(2),
            Some(n) if n.chars().all(|c| c.is_ascii_digit()) => {
                let n: usize = n.parse().ok()?;
                self.table.iter().position(|j| j.number == n)
            }
            Some(prefix) => self.table.iter().position(|j| j.text.starts_with(prefix)),
        }
    }

    /// The status of a job that already left the table.
    pub fn reaped_status(&self, spec: &str) -> Option<i32> {
        let pid: u32 = spec.parse().ok()?;
        self.reaped
            .iter()
            .rev()
            .find(|(p, _)| *p == pid)
            .map(|(_, st)| *st)
    }
}

impl Shell {
    /// `list &`: start the list and go on; `$!` names it.
    pub fn run_background(&mut self, ao: &AndOr) -> i32 {
        let text = job_text(ao);
        // Output captured by this shell (`$(… & …)`) is only handed over when a request ends,
        // so such a list runs to completion here, as a subshell (what a real shell's command
        // substitution waits for anyway: the job holds its pipe open).
        let captured = [&self.io.stdout, &self.io.stderr]
            .iter()
            .any(|o| matches!(o, Out::Capture(_)));
        let state = if captured {
            let st = self
                .subshell(|sh| {
                    sh.io.stdin = In::Null;
                    sh.exec_and_or(&AndOr {
                        background: false,
                        ..ao.clone()
                    })
                })
                .unwrap_or(1);
            JobState::Done(st)
        } else {
            let mut retries = 0;
            loop {
                match self.start_list(ao) {
                    Ok(Some(handle)) => break JobState::Running(handle),
                    Ok(None) => break JobState::Done(1),
                    // at the limits, like bash's `fork: retry`: once one of this shell's jobs
                    // has ended (or, without one, a moment later) there may be room again
                    Err(msg) if retries < MAX_START_RETRIES && refusal_may_pass(&msg) => {
                        retries += 1;
                        // jobs that ended a while ago freed room others have taken since: only
                        // one that ends from now on makes room for this one
                        self.refresh_jobs();
                        if !self.collect_one_job() {
                            let backoff = 10u64 << retries.min(4);
                            std::thread::sleep(std::time::Duration::from_millis(backoff));
                        }
                    }
                    Err(msg) => {
                        // like a failed fork: no job (a loop hitting the limits must not grow
                        // the table without bound)
                        self.errmsg(&msg);
                        self.status = 0;
                        return 0;
                    }
                }
            }
        };
        let pid = self.jobs.new_pid();
        let number = self.jobs.new_number();
        self.jobs.table.push(Job {
            pid,
            number,
            text,
            state,
        });
        self.jobs.last_pid = Some(pid);
        self.status = 0;
        0
    }

    /// Waits until one of this shell's running jobs ends and marks it done (it stays in the
    /// table). `false`: none was running.
    fn collect_one_job(&mut self) -> bool {
        while self.jobs.any_running() {
            let Some((handle, res)) = self.spawner.wait(None) else {
                return false;
            };
            let index = self
                .jobs
                .table
                .iter()
                .position(|j| matches!(j.state, JobState::Running(h) if h == handle));
            if let Some(i) = index {
                let st = self.job_status(res);
                self.jobs.table[i].state = JobState::Done(st);
                return true;
            }
        }
        false
    }

    /// Starts `ao` through the spawner. `Ok(None)`: its stages could not be built (the message
    /// is out); `Err`: the spawner refused it.
    fn start_list(&mut self, ao: &AndOr) -> Result<Option<JobHandle>, String> {
        let saved_stdin = std::mem::replace(&mut self.io.stdin, In::Null);
        let single_pipeline = ao.rest.is_empty() && !ao.first.bang && !ao.first.timed;
        let stages = if single_pipeline {
            self.pipeline_stages(&ao.first.cmds)
        } else {
            let list = Command::Compound(
                Compound::Brace(Program {
                    items: vec![AndOr {
                        background: false,
                        ..ao.clone()
                    }],
                }),
                Vec::new(),
            );
            self.pipeline_stages(std::slice::from_ref(&list))
        };
        self.io.stdin = saved_stdin;
        // output to this shell's captures is excluded above; nothing to route back
        self.pending_captures.clear();
        let Ok(stages) = stages else {
            return Ok(None);
        };
        self.flush_stdout();
        self.spawner.start(&Request { stages }).map(Some)
    }

    /// The status a job's result gives: the last stage's, or with `pipefail` the last non-zero.
    fn job_status(&mut self, res: Response) -> i32 {
        self.out_files_to_end();
        if let Some(e) = &res.error {
            let m = e.clone();
            self.errmsg(&m);
            return 126;
        }
        if !res.stdout.is_empty() {
            let o = self.io.stdout.clone();
            self.write_to(&o, res.stdout.as_bytes());
        }
        if !res.stderr.is_empty() {
            let o = self.io.stderr.clone();
            self.write_to(&o, res.stderr.as_bytes());
        }
        let last = res.statuses.last().copied().unwrap_or(0);
        if self.opts.pipefail {
            res.statuses
                .iter()
                .rev()
                .find(|&&s| s != 0)
                .copied()
                .unwrap_or(0)
        } else {
            last
        }
    }

    /// Waits for the job at `index` of the table (if it still runs) and takes it out: its status.
    pub fn wait_job(&mut self, index: usize) -> i32 {
        self.flush_stdout();
        let job = self.jobs.table.remove(index);
        let st = match job.state {
            JobState::Done(st) => st,
            JobState::Running(h) => match self.spawner.wait(Some(h)) {
                Some((_, res)) => self.job_status(res),
                None => 127,
            },
        };
        self.jobs.reaped.push((job.pid, st));
        st
    }

    /// `wait -n`: waits for the next job of the table to end (or takes one that has), among
    /// the jobs with these pids if given, and takes it out: its pid and status. `None`: no
    /// such job.
    pub fn wait_any_job(&mut self, among: Option<&[u32]>) -> Option<(u32, i32)> {
        self.flush_stdout();
        let wanted = |j: &Job| among.is_none_or(|pids| pids.contains(&j.pid));
        loop {
            let done = self
                .jobs
                .table
                .iter()
                .position(|j| wanted(j) && matches!(j.state, JobState::Done(_)));
            if let Some(i) = done {
                let pid = self.jobs.table[i].pid;
                return Some((pid, self.wait_job(i)));
            }
            let running = self
                .jobs
                .table
                .iter()
                .any(|j| wanted(j) && matches!(j.state, JobState::Running(_)));
            if !running || !self.collect_one_job() {
                return None;
            }
        }
    }

    /// Asks the spawner about every running job; ended ones become `Done` (their status
    /// collected), so `jobs` shows them as such.
    pub fn refresh_jobs(&mut self) {
        for i in 0..self.jobs.table.len() {
            if let JobState::Running(h) = self.jobs.table[i].state {
                if self.spawner.running(h) != Some(true) {
                    let st = match self.spawner.wait(Some(h)) {
                        Some((_, res)) => self.job_status(res),
                        None => 127,
                    };
                    self.jobs.table[i].state = JobState::Done(st);
                }
            }
        }
    }

    /// After a foreground command: jobs that have ended leave the table (bash's non-interactive
    /// shell does this without a word); `wait PID` still knows their status.
    pub fn reap_jobs(&mut self) {
        if self.jobs.table.is_empty() {
            return;
        }
        self.refresh_jobs();
        self.forget_done_jobs();
    }

    /// Moves the jobs that have ended from the table to `reaped` (where `wait PID` finds them).
    fn forget_done_jobs(&mut self) {
        let (done, running): (Vec<Job>, Vec<Job>) = std::mem::take(&mut self.jobs.table)
            .into_iter()
            .partition(|j| matches!(j.state, JobState::Done(_)));
        self.jobs.table = running;
        for job in done {
            if let JobState::Done(st) = job.state {
                self.jobs.reaped.push((job.pid, st));
            }
        }
    }

    /// A plain `jobs [-p] [-l]` command (no function of that name): bash lets it list the
    /// parent's jobs in a pipeline or `$(…)`, where it runs in a subshell.
    pub fn jobs_listing_command(&self, c: &Command) -> Option<(bool, bool)> {
        let Command::Simple(s) = c else { return None };
        if !s.assigns.is_empty() || !s.redirs.is_empty() || self.funcs.contains_key("jobs") {
            return None;
        }
        let words: Vec<&str> = s
            .words
            .iter()
            .map(|w| w.as_literal())
            .collect::<Option<_>>()?;
        let (first, opts) = words.split_first()?;
        if *first != "jobs" || !opts.iter().all(|o| matches!(*o, "-p" | "-l")) {
            return None;
        }
        Some((opts.contains(&"-p"), opts.contains(&"-l")))
    }

    /// `jobs [-l|-p]`: the table as bash prints it; ended jobs are listed once, then dropped.
    pub fn list_jobs(&mut self, pids_only: bool, long: bool) -> String {
        self.refresh_jobs();
        let n = self.jobs.table.len();
        let mut s = String::new();
        for (i, job) in self.jobs.table.iter().enumerate() {
            if pids_only {
                s.push_str(&format!("{}\n", job.pid));
                continue;
            }
            let mark = if i + 1 == n {
                '+'
            } else if i + 2 == n {
                '-'
            } else {
                ' '
            };
            let (state, text) = match job.state {
                JobState::Running(_) => ("Running".to_string(), job.text.clone()),
                JobState::Done(0) => ("Done".to_string(), strip_amp(&job.text)),
                JobState::Done(st) => (format!("Exit {st}"), strip_amp(&job.text)),
            };
            if long {
                s.push_str(&format!(
                    "[{}]{} {} {:<24}{}\n",
                    job.number, mark, job.pid, state, text
                ));
            } else {
                s.push_str(&format!(
                    "[{}]{}  {:<24}{}\n",
                    job.number, mark, state, text
                ));
            }
        }
        self.forget_done_jobs();
        s
    }
}

/// May a refused start succeed later? Not when the execution's total or the nesting depth is
/// exhausted (the host's messages: `spawn limit reached (N programs per execution)`,
/// `… (nesting deeper than N)`); the other limits count what runs at the moment.
fn refusal_may_pass(msg: &str) -> bool {
    !msg.contains("per execution") && !msg.contains("nesting")
}

/// The command of a job as `jobs` shows it: the list on one line, then ` &`.
fn job_text(ao: &AndOr) -> String {
    let mut u = crate::unparse::Unparser::new();
    u.and_or(&AndOr {
        background: false,
        ..ao.clone()
    });
    format!("{} &", u.out.trim_end())
}

/// A finished job is listed without its `&`.
fn strip_amp(text: &str) -> String {
    text.strip_suffix(" &").unwrap_or(text).to_string()
}
