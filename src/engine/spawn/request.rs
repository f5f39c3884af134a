//! Running one spawn request: admission and limits, the stages' streams, one task per stage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmbox_spawn_abi::{Input, Output, Request, Response, Stage};

use super::config::{BuildFailure, HostCommand, ProgramBuilder, Resolved, MAX_SOURCE_BYTES};
use super::jobs::JobTable;
use super::open::open_in_sandbox;
use super::pipe::{Pipe, PIPE_CAPACITY};
use super::stdio::{InstanceIo, Sink, Source};
use super::{SpawnConfig, SpawnState, Tree};
use crate::engine::{
    CapturedOutput, Engine, Entry, ExecSpec, Limits, Mount, PreparedModule, Termination,
};

/// What a spawn request needs from the calling instance (cloned out of the store).
pub(super) struct ChildContext {
    engine: Engine,
    config: Arc<SpawnConfig>,
    tree: Arc<Tree>,
    depth: u32,
    mounts: Vec<Mount>,
    limits: Limits,
    deadline: Instant,
    stdin: Source,
    stdout: Sink,
    stderr: Sink,
}

impl ChildContext {
    /// The execution's tree (limits and background jobs).
    pub(super) fn tree(&self) -> Arc<Tree> {
        self.tree.clone()
    }
}

impl SpawnState {
    pub(super) fn child_context(&self) -> ChildContext {
        ChildContext {
            engine: self.engine.clone(),
            config: self.config.clone(),
            tree: self.tree.clone(),
            depth: self.depth,
            mounts: self.mounts.clone(),
            limits: self.limits.clone(),
            deadline: self.deadline,
            stdin: self.stdin.clone(),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
        }
    }
}

/// Aborts the child tasks if the spawning instance goes away (e.g. its deadline passed).
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Decrements the live-instance count when a child ends (or is aborted), and tells
/// [`Tree::end_jobs`] when none is left. It holds the child's pool ticket and gives it back
/// first, so whoever sees no live instance also sees their pool slots free (an aborted task
/// drops its captures in no particular order).
struct LiveGuard(Arc<Tree>, Option<crate::engine::admission::Ticket>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        drop(self.1.take());
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// A stage's streams, before it runs.
struct StageIo {
    /// Set when the stage's instance writes to a pipe nobody reads (it then reports 141).
    sigpipe: Arc<AtomicBool>,
    io: InstanceIo,
    /// Set when a redirection could not be opened: the stage is not run.
    error: Option<String>,
}

fn build_io(
    ctx: &ChildContext,
    st: &Stage,
    i: usize,
    pipes: &[Pipe],
    caps: &(CapturedOutput, CapturedOutput),
) -> StageIo {
    let cwd = st.cwd.as_str();
    let sigpipe = Arc::new(AtomicBool::new(false));
    let mut error = None;
    let stdin = match &st.stdin {
        Input::Pipe if i > 0 => Source::Pipe(pipes[i - 1].reader()),
        Input::Pipe | Input::Null => Source::Empty,
        Input::Inherit => ctx.stdin.clone(),
        Input::Data(data) => Source::data(data.clone().into_bytes()),
        Input::Fifo(path) => match ctx.tree.named_pipes.get(path) {
            Ok(p) => Source::Pipe(p.reader()),
            Err(_) => {
                error = Some(format!("sh: {path}: too many named pipes\n"));
                Source::Empty
            }
        },
        Input::File { file, offset } => {
            if file == "/dev/null" {
                Source::Empty
            } else {
                match open_in_sandbox(&ctx.mounts, cwd, file, None, *offset) {
                    Ok(f) => Source::File(Arc::new(Mutex::new(f))),
                    Err(e) => {
                        error = Some(format!("sh: {file}: {e}\n"));
                        Source::Empty
                    }
                }
            }
        }
    };
    let out_of = |r: &Output, is_err: bool, error: &mut Option<String>| -> Option<Sink> {
        Some(match r {
            Output::Pipe if i < pipes.len() => Sink::Pipe(pipes[i].writer(), sigpipe.clone()),
            Output::Pipe | Output::Null => Sink::Null,
            Output::Capture => Sink::Captured(if is_err {
                caps.1.clone()
            } else {
                caps.0.clone()
            }),
            Output::ParentStdout => ctx.stdout.for_instance(&sigpipe),
            Output::ParentStderr => ctx.stderr.for_instance(&sigpipe),
            Output::Stdout | Output::Stderr => return None, // dup of the other stream, resolved below
            Output::Fifo(path) => match ctx.tree.named_pipes.get(path) {
                Ok(p) => Sink::Pipe(p.writer(), sigpipe.clone()),
                Err(_) => {
                    error.get_or_insert(format!("sh: {path}: too many named pipes\n"));
                    Sink::Null
                }
            },
            Output::Inherit => {
                if is_err {
                    ctx.stderr.for_instance(&sigpipe)
                } else {
                    ctx.stdout.for_instance(&sigpipe)
                }
            }
            Output::File { file, mode, offset } => {
                if file == "/dev/null" {
                    Sink::Null
                } else {
                    match open_in_sandbox(&ctx.mounts, cwd, file, Some(*mode), *offset) {
                        Ok(f) => Sink::File(
                            Arc::new(Mutex::new(f)),
                            ctx.limits.tenant.as_ref().and_then(|t| t.disk().cloned()),
                        ),
                        Err(e) => {
                            error.get_or_insert(format!("sh: {file}: {e}\n"));
                            Sink::Null
                        }
                    }
                }
            }
        })
    };
    let out = out_of(&st.stdout, false, &mut error);
    let err = out_of(&st.stderr, true, &mut error);
    let (stdout, stderr) = match (out, err) {
        (Some(o), Some(e)) => (o, e),
        (Some(o), None) => (o.clone(), o),
        (None, Some(e)) => (e.clone(), e),
        (None, None) => (
            ctx.stdout.for_instance(&sigpipe),
            ctx.stderr.for_instance(&sigpipe),
        ),
    };
    StageIo {
        sigpipe,
        io: InstanceIo {
            stdin,
            stdout,
            stderr,
            display: Default::default(),
            peak_memory: Default::default(),
        },
        error,
    }
}

/// A request whose stages have all been started: [`Started::finish`] waits for them.
pub(super) struct Started {
    /// One per stage; `None` for a stage that never ran (its status is already in `statuses`).
    tasks: Vec<Option<tokio::task::JoinHandle<i32>>>,
    statuses: Vec<i32>,
    /// Dropping an unfinished `Started` (the job was killed, the caller went away) ends the stages.
    aborts: AbortOnDrop,
    caps: (CapturedOutput, CapturedOutput),
}

impl Started {
    /// Waits until every stage has ended; their statuses and what they captured.
    pub(super) async fn finish(self) -> Response {
        let Started {
            tasks,
            mut statuses,
            aborts,
            caps,
        } = self;
        for (i, t) in tasks.into_iter().enumerate() {
            if let Some(t) = t {
                statuses[i] = t.await.unwrap_or(134);
            }
        }
        drop(aborts);
        let (out, _) = caps.0.contents();
        let (err, _) = caps.1.contents();
        Response {
            statuses,
            stdout: out,
            stderr: err,
            error: None,
            job: None,
        }
    }
}

/// The module a stage runs: loaded already, or built from a source file in the sandbox first.
enum Program {
    Ready(Arc<PreparedModule>),
    Build {
        builder: Arc<dyn ProgramBuilder>,
        /// Absolute guest path of the source file.
        source: String,
    },
}

/// What a stage does: run an instance of a program, or let the host answer.
enum StageWork {
    Instance(Program),
    /// No instance: the host answers (see [`HostCommand`]).
    Host {
        command: Arc<dyn HostCommand>,
        args: Vec<String>,
        cwd: String,
    },
}

impl Program {
    /// The module to run, building it (under the stage's limits and deadline) if needed; a
    /// failed build is the stage's stderr and status.
    async fn ready(
        self,
        spec: &ExecSpec,
        deadline: Instant,
    ) -> Result<Arc<PreparedModule>, BuildFailure> {
        match self {
            Program::Ready(module) => Ok(module),
            Program::Build { builder, source } => {
                let code = read_source(&spec.mounts, &source).map_err(|e| BuildFailure {
                    message: format!("go: {source}: {e}\n"),
                    status: 1,
                })?;
                let file_name = source.rsplit('/').next().unwrap_or_default().to_string();
                builder
                    .build(code, file_name, spec.limits.clone(), deadline)
                    .await
            }
        }
    }
}

/// A source file of the sandbox, as text, at most [`MAX_SOURCE_BYTES`].
fn read_source(mounts: &[Mount], path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = open_in_sandbox(mounts, "/", path, None, None)?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(format!("larger than {} MiB", MAX_SOURCE_BYTES >> 20));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// Runs a request to its end (the `spawn` import).
pub(super) async fn run_request(ctx: ChildContext, req: Request) -> Response {
    match start_request(ctx, req).await {
        Ok(started) => started.finish().await,
        Err(refusal) => refusal,
    }
}

/// Admits a request against the tree's limits and the host's pool and starts every stage, or
/// refuses it whole (nothing started).
pub(super) async fn start_request(ctx: ChildContext, req: Request) -> Result<Started, Response> {
    let n = req.stages.len();
    let caps = (
        CapturedOutput::new(ctx.limits.output_bytes),
        CapturedOutput::new(ctx.limits.output_bytes),
    );
    if n == 0 {
        return Ok(Started {
            tasks: Vec::new(),
            statuses: Vec::new(),
            aborts: AbortOnDrop(Vec::new()),
            caps,
        });
    }
    let cfg = ctx.config.clone();
    if ctx.depth + 1 > cfg.max_depth {
        return Err(Response::refused(format!(
            "spawn limit reached (nesting deeper than {})",
            cfg.max_depth
        )));
    }
    // Reserve the instances up front so a pipeline starts whole or not at all.
    let total = ctx.tree.total.fetch_add(n as u32, Ordering::SeqCst) + n as u32;
    if total > cfg.max_total {
        return Err(Response::refused(format!(
            "spawn limit reached ({} programs per execution)",
            cfg.max_total
        )));
    }
    let live = ctx.tree.live.fetch_add(n as u32, Ordering::SeqCst) + n as u32;
    if live > cfg.max_concurrent {
        ctx.tree.live.fetch_sub(n as u32, Ordering::SeqCst);
        return Err(Response::refused(format!(
            "spawn limit reached ({} programs at once)",
            cfg.max_concurrent
        )));
    }
    let mut guards: Vec<Option<LiveGuard>> = (0..n)
        .map(|_| Some(LiveGuard(ctx.tree.clone(), None)))
        .collect();
    // Every stage is an instance of the host's pool: admit them all before starting any. A
    // refusal drops the guards, which give back the live counts and the tickets taken.
    for guard in guards.iter_mut().flatten() {
        match ctx.engine.admit_child(&ctx.limits) {
            Ok(ticket) => guard.1 = Some(ticket),
            Err(refusal) => {
                return Err(Response::refused(format!(
                    "cannot start a program: resource temporarily unavailable ({refusal})"
                )))
            }
        }
    }

    let pipes: Vec<Pipe> = (0..n.saturating_sub(1))
        .map(|_| Pipe::new(PIPE_CAPACITY))
        .collect();
    let ios: Vec<StageIo> = req
        .stages
        .iter()
        .enumerate()
        .map(|(i, st)| build_io(&ctx, st, i, &pipes, &caps))
        .collect();
    drop(pipes); // only the stages' ends keep the pipes open now

    let mut statuses = vec![0i32; n];
    let mut tasks: Vec<Option<tokio::task::JoinHandle<i32>>> = Vec::with_capacity(n);
    let mut aborts = AbortOnDrop(Vec::new());
    for (i, (st, stage_io)) in req.stages.into_iter().zip(ios).enumerate() {
        let StageIo { sigpipe, io, error } = stage_io;
        if let Some(msg) = error {
            let _ = io.stderr.append(msg.as_bytes());
            statuses[i] = 1;
            tasks.push(None);
            continue; // dropping `io` closes this stage's pipe ends
        }
        let cwd = st.cwd;
        let (work, argv, extra_env) = match cfg.resolve(&st.argv, &cwd) {
            Ok(Resolved::Module(module_path, argv, extra_env)) => {
                match ctx.engine.prepare(&module_path).await {
                    Ok(module) => (StageWork::Instance(Program::Ready(module)), argv, extra_env),
                    Err(e) => {
                        let _ = io.stderr.append(
                            format!(
                                "sh: {}: {e}\n",
                                st.argv.first().map(String::as_str).unwrap_or("")
                            )
                            .as_bytes(),
                        );
                        statuses[i] = 126;
                        tasks.push(None);
                        continue;
                    }
                }
            }
            Ok(Resolved::Build {
                builder,
                source,
                argv,
            }) => (
                StageWork::Instance(Program::Build { builder, source }),
                argv,
                Vec::new(),
            ),
            Ok(Resolved::Host { command, args }) => (
                StageWork::Host {
                    command,
                    args,
                    cwd: cwd.clone(),
                },
                Vec::new(),
                Vec::new(),
            ),
            Ok(Resolved::Answer { text, status }) => {
                let sink = if status == 0 { &io.stdout } else { &io.stderr };
                let _ = sink.append(text.as_bytes());
                statuses[i] = status;
                tasks.push(None);
                continue;
            }
            Err(msg) => {
                let _ = io.stderr.append(format!("sh: {msg}\n").as_bytes());
                statuses[i] = 127;
                tasks.push(None);
                continue;
            }
        };
        let mut env: Vec<(String, String)> =
            st.env.into_iter().filter(|(k, _)| k != "PWD").collect();
        for (k, v) in extra_env {
            env.retain(|(x, _)| *x != k);
            env.push((k, v));
        }
        env.push(("PWD".into(), cwd));
        let spec = ExecSpec {
            entry: Entry::Start,
            argv,
            env,
            mounts: ctx.mounts.clone(),
            limits: ctx.limits.clone(),
            ..ExecSpec::default()
        };
        let child_state = SpawnState {
            engine: ctx.engine.clone(),
            config: ctx.config.clone(),
            tree: ctx.tree.clone(),
            depth: ctx.depth + 1,
            mounts: ctx.mounts.clone(),
            limits: ctx.limits.clone(),
            deadline: ctx.deadline,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            pending: None,
            jobs: JobTable::default(),
            fifo_ends: Default::default(),
        };
        let engine = ctx.engine.clone();
        let deadline = ctx.deadline;
        let guard = guards[i].take();
        let task = tokio::spawn(async move {
            let _guard = guard;
            let errsink = io.stderr.clone();
            let program = match work {
                StageWork::Host { command, args, cwd } => {
                    let output = command.run(args, cwd).await;
                    let _ = io.stdout.append(output.stdout.as_bytes());
                    let _ = io.stderr.append(output.stderr.as_bytes());
                    return output.status;
                }
                StageWork::Instance(program) => program,
            };
            let module = match program.ready(&spec, deadline).await {
                Ok(module) => module,
                Err(BuildFailure { message, status }) => {
                    let _ = errsink.append(message.as_bytes());
                    return status;
                }
            };
            match engine
                .run_instance(&module, &spec, io, deadline, Some(child_state))
                .await
            {
                Ok((Termination::Exited, code)) => code,
                Ok((Termination::Trapped, _)) if sigpipe.load(Ordering::SeqCst) => 141,
                Ok((_, code)) => code,
                Err(e) => {
                    let _ = errsink.append(
                        format!(
                            "sh: {}: {e}\n",
                            spec.argv.first().map(String::as_str).unwrap_or("")
                        )
                        .as_bytes(),
                    );
                    126
                }
            }
        });
        aborts.0.push(task.abort_handle());
        tasks.push(Some(task));
    }
    Ok(Started {
        tasks,
        statuses,
        aborts,
        caps,
    })
}
