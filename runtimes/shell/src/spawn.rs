//! Running other programs. WASI preview 1 has no fork/exec, so every external command and every
//! pipeline stage is started by the host through the `wasmbox.spawn` import (see ABI.md). The
//! request and response types are the `wasmbox-spawn-abi` crate's, shared with the host. The
//! executor only sees the [`Spawner`] trait; natively (tests) [`NativeSpawner`] implements the same
//! request with `std::process`.

pub use wasmbox_spawn_abi::{Input, Output, OutputMode, Request, Response, Stage};

/// A background job, as the spawner numbers it (not what `$!` shows).
pub type JobHandle = u32;

pub trait Spawner {
    /// Runs `req` to its end.
    fn spawn(&mut self, req: &Request) -> Response;
    /// Starts `req` in the background (`list &`). `Err`: the refusal; nothing started.
    fn start(&mut self, req: &Request) -> Result<JobHandle, String>;
    /// Waits until `job` (`None`: any job of this shell) has ended and forgets it: its handle and
    /// result. `None`: no such job (or no job at all).
    fn wait(&mut self, job: Option<JobHandle>) -> Option<(JobHandle, Response)>;
    /// Is the job still running? `None`: no such job.
    fn running(&mut self, job: JobHandle) -> Option<bool>;
    /// Stops a running job; its stages then report `128 + signal`. `Some(true)`: it was running,
    /// `Some(false)`: it had already ended, `None`: no such job.
    fn kill(&mut self, job: JobHandle, signal: i32) -> Option<bool>;
}

/// The spawner for this build: the host import on wasm32, std::process natively.
pub fn default_spawner() -> Box<dyn Spawner> {
    #[cfg(target_family = "wasm")]
    {
        Box::new(HostSpawner)
    }
    #[cfg(not(target_family = "wasm"))]
    {
        Box::new(NativeSpawner::default())
    }
}

/// End this instance with `status` (0–255), after flushing stdio.
pub fn exit_process(status: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(target_family = "wasm")]
    // SAFETY: `wasmbox.exit` takes a plain status and never returns.
    unsafe {
        host::exit(status & 0xff)
    }
    #[cfg(not(target_family = "wasm"))]
    std::process::exit(status & 0xff)
}

#[cfg(target_family = "wasm")]
mod host {
    #[link(wasm_import_module = "wasmbox")]
    extern "C" {
        pub fn spawn(req_ptr: *const u8, req_len: i32) -> i32;
        pub fn spawn_result(buf_ptr: *mut u8, buf_len: i32) -> i32;
        pub fn spawn_start(req_ptr: *const u8, req_len: i32) -> i32;
        pub fn spawn_wait(job: i32) -> i32;
        pub fn spawn_poll(job: i32) -> i32;
        pub fn spawn_kill(job: i32, signal: i32) -> i32;
        pub fn fifo_open(path_ptr: *const u8, path_len: i32, write: i32) -> i32;
        pub fn fifo_read(handle: i32, buf_ptr: *mut u8, buf_len: i32) -> i32;
        pub fn fifo_write(handle: i32, data_ptr: *const u8, data_len: i32) -> i32;
        pub fn fifo_close(handle: i32) -> i32;
        pub fn exit(status: i32) -> !;
    }
}

/// One end of a named pipe (`mkfifo`) that this shell holds open itself, for a builtin's
/// redirection (`echo hi > p`, `read l < p`). The pipe lives in the host, shared with every
/// instance of the execution (see `ABI.md`); dropping the end closes it.
#[derive(Debug)]
pub struct FifoEnd {
    /// The absolute path of the pipe's name.
    pub path: String,
    #[cfg_attr(not(target_family = "wasm"), allow(dead_code))]
    handle: i32,
}

#[cfg(target_family = "wasm")]
fn fifo_error(code: i32) -> std::io::Error {
    match code {
        -32 => std::io::ErrorKind::BrokenPipe.into(),
        -24 => std::io::Error::other("too many named pipes open"),
        _ => std::io::Error::other(format!("named pipe error {code}")),
    }
}

impl FifoEnd {
    /// Opens the read (or write) end of the named pipe at the absolute path `path`.
    #[cfg(target_family = "wasm")]
    pub fn open(path: &str, write: bool) -> std::io::Result<FifoEnd> {
        // SAFETY: the host reads `path.len()` bytes at `path.as_ptr()`, which stay valid.
        let handle = unsafe { host::fifo_open(path.as_ptr(), path.len() as i32, write as i32) };
        if handle < 0 {
            return Err(fifo_error(handle));
        }
        Ok(FifoEnd {
            path: path.to_string(),
            handle,
        })
    }

    /// Natively the named pipe is a real FIFO and this is never used.
    #[cfg(not(target_family = "wasm"))]
    pub fn open(_path: &str, _write: bool) -> std::io::Result<FifoEnd> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// Up to `buf.len()` bytes, waiting for a writer; 0 at EOF.
    pub fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(target_family = "wasm")]
        {
            // SAFETY: the host writes at most `buf.len()` bytes into `buf`.
            let n = unsafe { host::fifo_read(self.handle, buf.as_mut_ptr(), buf.len() as i32) };
            if n < 0 {
                return Err(fifo_error(n));
            }
            Ok(n as usize)
        }
        #[cfg(not(target_family = "wasm"))]
        {
            let _ = buf;
            Ok(0)
        }
    }

    /// Writes all of `data`, waiting while the pipe is full.
    pub fn write_all(&self, data: &[u8]) -> std::io::Result<()> {
        #[cfg(target_family = "wasm")]
        {
            // SAFETY: the host reads `data.len()` bytes at `data.as_ptr()`.
            let n = unsafe { host::fifo_write(self.handle, data.as_ptr(), data.len() as i32) };
            if n < 0 {
                return Err(fifo_error(n));
            }
            Ok(())
        }
        #[cfg(not(target_family = "wasm"))]
        {
            let _ = data;
            Ok(())
        }
    }
}

impl Drop for FifoEnd {
    fn drop(&mut self) {
        #[cfg(target_family = "wasm")]
        // SAFETY: closing a handle has no memory effects.
        unsafe {
            host::fifo_close(self.handle);
        }
    }
}

#[cfg(target_family = "wasm")]
pub struct HostSpawner;

#[cfg(target_family = "wasm")]
impl HostSpawner {
    /// Sends `req` through `import` (`spawn` or `spawn_start`) and fetches the result.
    fn call(req: &Request, import: unsafe extern "C" fn(*const u8, i32) -> i32) -> Response {
        let json = match serde_json::to_vec(req) {
            Ok(j) => j,
            Err(e) => return Response::refused(format!("bad spawn request: {e}")),
        };
        // SAFETY: the host reads exactly `json.len()` bytes from this live buffer.
        let n = unsafe { import(json.as_ptr(), json.len() as i32) };
        if n < 0 {
            return Response::refused(format!("spawn request rejected ({n})"));
        }
        Self::result(n)
    }

    /// The pending result of `n` bytes the last call announced.
    fn result(n: i32) -> Response {
        let mut buf = vec![0u8; n.max(0) as usize];
        // SAFETY: the host writes at most `n` bytes, the buffer's length.
        let got = unsafe { host::spawn_result(buf.as_mut_ptr(), n) };
        buf.truncate(got.max(0) as usize);
        match serde_json::from_slice::<Response>(&buf) {
            Ok(r) => r,
            Err(e) => Response::refused(format!("bad spawn result: {e}")),
        }
    }
}

/// A job handle for the host (which takes `-1` as "any job").
#[cfg(target_family = "wasm")]
fn raw_handle(job: JobHandle) -> i32 {
    i32::try_from(job).unwrap_or(i32::MAX)
}

#[cfg(target_family = "wasm")]
impl Spawner for HostSpawner {
    fn spawn(&mut self, req: &Request) -> Response {
        Self::call(req, host::spawn)
    }

    fn start(&mut self, req: &Request) -> Result<JobHandle, String> {
        let res = Self::call(req, host::spawn_start);
        match (res.error, res.job) {
            (Some(e), _) => Err(e),
            (None, Some(job)) => Ok(job),
            (None, None) => Err("spawn_start named no job".into()),
        }
    }

    fn wait(&mut self, job: Option<JobHandle>) -> Option<(JobHandle, Response)> {
        // SAFETY: plain integers in, a result length out.
        let n = unsafe { host::spawn_wait(job.map(raw_handle).unwrap_or(-1)) };
        if n < 0 {
            return None;
        }
        let res = Self::result(n);
        Some((res.job.or(job)?, res))
    }

    fn running(&mut self, job: JobHandle) -> Option<bool> {
        // SAFETY: plain integers in and out.
        match unsafe { host::spawn_poll(raw_handle(job)) } {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn kill(&mut self, job: JobHandle, signal: i32) -> Option<bool> {
        // SAFETY: plain integers in and out.
        match unsafe { host::spawn_kill(raw_handle(job), signal) } {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        }
    }
}

/// Runs stages as native processes: the program itself (current executable, or `exe`) for sh and
/// the applets, `python3`/`node` from PATH for python/node. Used by the native tests.
/// Background jobs are native processes too; killing one sends SIGKILL to its stages (std has
/// no other signal) and reports `128 + signal` like the host.
#[cfg(not(target_family = "wasm"))]
#[derive(Default)]
pub struct NativeSpawner {
    pub exe: Option<std::path::PathBuf>,
    jobs: std::collections::BTreeMap<JobHandle, native::Job>,
    next_job: JobHandle,
}

#[cfg(not(target_family = "wasm"))]
impl Spawner for NativeSpawner {
    fn spawn(&mut self, req: &Request) -> Response {
        native::start(self.exe.clone(), req).finish()
    }

    fn start(&mut self, req: &Request) -> Result<JobHandle, String> {
        let job = native::start(self.exe.clone(), req);
        let handle = self.next_job;
        self.next_job += 1;
        self.jobs.insert(handle, native::Job::new(job));
        Ok(handle)
    }

    fn wait(&mut self, job: Option<JobHandle>) -> Option<(JobHandle, Response)> {
        let handle = match job {
            Some(h) => h,
            None => loop {
                if self.jobs.is_empty() {
                    return None;
                }
                let ended = self
                    .jobs
                    .iter_mut()
                    .find_map(|(h, j)| (!j.running()).then_some(*h));
                match ended {
                    Some(h) => break h,
                    None => std::thread::sleep(std::time::Duration::from_millis(2)),
                }
            },
        };
        let job = self.jobs.remove(&handle)?;
        let mut res = job.finish();
        res.job = Some(handle);
        Some((handle, res))
    }

    fn running(&mut self, job: JobHandle) -> Option<bool> {
        self.jobs.get_mut(&job).map(native::Job::running)
    }

    fn kill(&mut self, job: JobHandle, signal: i32) -> Option<bool> {
        let job = self.jobs.get_mut(&job)?;
        if signal <= 0 || !job.running() {
            return Some(job.running());
        }
        job.kill(128 + signal);
        Some(true)
    }
}

#[cfg(not(target_family = "wasm"))]
mod native {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    enum Sink {
        Stdio(Stdio),
        Capture(std::io::PipeWriter),
    }

    fn dup_stdout() -> std::io::Result<Stdio> {
        Ok(Stdio::from(std::io::stdout().as_fd().try_clone_to_owned()?))
    }
    fn dup_stderr() -> std::io::Result<Stdio> {
        Ok(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
    }

    fn open(
        path: &str,
        cwd: &str,
        mode: Option<OutputMode>,
        offset: Option<u64>,
    ) -> std::io::Result<std::fs::File> {
        let p = std::path::Path::new(cwd).join(path);
        let mut o = std::fs::OpenOptions::new();
        match mode {
            None => o.read(true),
            Some(OutputMode::Append) => o.append(true).create(true),
            Some(OutputMode::ReadWrite) => o.read(true).write(true).create(true),
            Some(OutputMode::Write) => o.write(true).create(true).truncate(true),
        };
        let mut f = o.open(p)?;
        if let Some(off) = offset {
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(off))?;
        }
        Ok(f)
    }

    /// A request whose stages have been started.
    pub struct Running {
        children: Vec<Option<std::process::Child>>,
        statuses: Vec<i32>,
        feeders: Vec<std::thread::JoinHandle<()>>,
        t_out: std::thread::JoinHandle<Vec<u8>>,
        t_err: std::thread::JoinHandle<Vec<u8>>,
    }

    impl Running {
        /// Waits for every stage; their statuses and captured output.
        pub fn finish(mut self) -> Response {
            for (i, c) in self.children.iter_mut().enumerate() {
                if let Some(c) = c {
                    let st = c.wait().map(|s| {
                        use std::os::unix::process::ExitStatusExt;
                        s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
                    });
                    self.statuses[i] = st.unwrap_or(127);
                }
            }
            for f in self.feeders {
                let _ = f.join();
            }
            let out = self.t_out.join().unwrap_or_default();
            let err = self.t_err.join().unwrap_or_default();
            Response {
                statuses: self.statuses,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
                error: None,
                job: None,
            }
        }
    }

    /// A background job: its stages, and the status a kill gave them.
    pub struct Job {
        running: Running,
        killed: Option<i32>,
    }

    impl Job {
        pub fn new(running: Running) -> Self {
            Job {
                running,
                killed: None,
            }
        }

        /// Has some stage not ended yet?
        pub fn running(&mut self) -> bool {
            self.running
                .children
                .iter_mut()
                .flatten()
                .any(|c| matches!(c.try_wait(), Ok(None)))
        }

        pub fn kill(&mut self, status: i32) {
            for c in self.running.children.iter_mut().flatten() {
                let _ = c.kill();
            }
            self.killed = Some(status);
        }

        pub fn finish(self) -> Response {
            let n = self.running.statuses.len();
            let mut res = self.running.finish();
            if let Some(status) = self.killed {
                res.statuses = vec![status; n];
            }
            res
        }
    }

    pub fn start(exe: Option<std::path::PathBuf>, req: &Request) -> Running {
        let exe = exe.unwrap_or_else(|| std::env::current_exe().expect("current_exe"));
        let n = req.stages.len();
        let mut statuses = vec![0; n];
        let (cap_out_r, cap_out_w) = std::io::pipe().expect("pipe");
        let (cap_err_r, cap_err_w) = std::io::pipe().expect("pipe");
        let t_out = std::thread::spawn(move || {
            let mut r = cap_out_r;
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        });
        let t_err = std::thread::spawn(move || {
            let mut r = cap_err_r;
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        });
        let mut children: Vec<Option<std::process::Child>> = Vec::new();
        let mut prev_pipe: Option<std::io::PipeReader> = None;
        let mut feeders = Vec::new();
        for (i, st) in req.stages.iter().enumerate() {
            let next_pipe = if i + 1 < n {
                Some(std::io::pipe().expect("pipe"))
            } else {
                None
            };
            let mut errmsg: Option<String> = None;
            // stdin
            let stdin: Stdio = match &st.stdin {
                Input::Pipe => prev_pipe.take().map(Stdio::from).unwrap_or(Stdio::null()),
                Input::Null => Stdio::null(),
                Input::File { file, offset } => match open(file, &st.cwd, None, *offset) {
                    Ok(f) => Stdio::from(f),
                    Err(e) => {
                        errmsg = Some(format!("sh: {file}: {}\n", crate::exec::io_err_msg(&e)));
                        Stdio::null()
                    }
                },
                Input::Data(data) => {
                    let (r, mut w) = std::io::pipe().expect("pipe");
                    let d = data.clone().into_bytes();
                    feeders.push(std::thread::spawn(move || {
                        let _ = w.write_all(&d);
                    }));
                    Stdio::from(r)
                }
                Input::Inherit => Stdio::inherit(),
                // natively a named pipe is a real FIFO (the shell never sends these)
                Input::Fifo(path) => std::fs::File::open(path)
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            };
            let mk_out = |s: &Output, is_err: bool, errmsg: &mut Option<String>| -> Option<Sink> {
                Some(match s {
                    Output::Pipe => Sink::Stdio(Stdio::from(
                        next_pipe.as_ref().map(|p| p.1.try_clone().unwrap())?,
                    )),
                    Output::Null => Sink::Stdio(Stdio::null()),
                    Output::Capture => Sink::Capture(if is_err {
                        cap_err_w.try_clone().unwrap()
                    } else {
                        cap_out_w.try_clone().unwrap()
                    }),
                    Output::Inherit => Sink::Stdio(if is_err {
                        dup_stderr().ok()?
                    } else {
                        dup_stdout().ok()?
                    }),
                    Output::ParentStdout | Output::Stdout => Sink::Stdio(dup_stdout().ok()?),
                    Output::ParentStderr | Output::Stderr => Sink::Stdio(dup_stderr().ok()?),
                    Output::Fifo(path) => Sink::Stdio(
                        std::fs::OpenOptions::new()
                            .append(true)
                            .open(path)
                            .map(Stdio::from)
                            .unwrap_or(Stdio::null()),
                    ),
                    Output::File { file, mode, offset } => {
                        match open(file, &st.cwd, Some(*mode), *offset) {
                            Ok(f) => Sink::Stdio(Stdio::from(f)),
                            Err(e) => {
                                *errmsg =
                                    Some(format!("sh: {file}: {}\n", crate::exec::io_err_msg(&e)));
                                Sink::Stdio(Stdio::null())
                            }
                        }
                    }
                })
            };
            // stdout first, then stderr; dups share the same description.
            let (stdout, stderr): (Stdio, Stdio);
            let to_stdio = |s: Sink| match s {
                Sink::Stdio(s) => s,
                Sink::Capture(w) => Stdio::from(w),
            };
            let dup_of = |s: &Sink| -> Option<Sink> {
                match s {
                    Sink::Capture(w) => Some(Sink::Capture(w.try_clone().ok()?)),
                    Sink::Stdio(_) => None,
                }
            };
            if st.stderr == Output::Stdout {
                let o =
                    mk_out(&st.stdout, false, &mut errmsg).unwrap_or(Sink::Stdio(Stdio::null()));
                let e = match (&o, &st.stdout) {
                    (Sink::Capture(_), _) => dup_of(&o).unwrap(),
                    (_, Output::Pipe) => mk_out(&st.stdout, false, &mut errmsg).unwrap(),
                    (_, Output::Inherit) | (_, Output::ParentStdout) => {
                        Sink::Stdio(dup_stdout().unwrap())
                    }
                    (_, Output::ParentStderr) => Sink::Stdio(dup_stderr().unwrap()),
                    (_, Output::Null) => Sink::Stdio(Stdio::null()),
                    (_, Output::File { file, .. }) => {
                        match open(file, &st.cwd, Some(OutputMode::Append), None) {
                            Ok(f) => Sink::Stdio(Stdio::from(f)),
                            Err(_) => Sink::Stdio(Stdio::null()),
                        }
                    }
                    _ => Sink::Stdio(Stdio::null()),
                };
                stdout = to_stdio(o);
                stderr = to_stdio(e);
            } else if st.stdout == Output::Stderr {
                let e = mk_out(&st.stderr, true, &mut errmsg).unwrap_or(Sink::Stdio(Stdio::null()));
                let o = match (&e, &st.stderr) {
                    (Sink::Capture(_), _) => dup_of(&e).unwrap(),
                    (_, Output::Inherit) | (_, Output::ParentStderr) => {
                        Sink::Stdio(dup_stderr().unwrap())
                    }
                    (_, Output::ParentStdout) => Sink::Stdio(dup_stdout().unwrap()),
                    (_, Output::Pipe) => mk_out(&st.stderr, true, &mut errmsg).unwrap(),
                    (_, Output::File { file, .. }) => {
                        match open(file, &st.cwd, Some(OutputMode::Append), None) {
                            Ok(f) => Sink::Stdio(Stdio::from(f)),
                            Err(_) => Sink::Stdio(Stdio::null()),
                        }
                    }
                    _ => Sink::Stdio(Stdio::null()),
                };
                stdout = to_stdio(o);
                stderr = to_stdio(e);
            } else {
                stdout = to_stdio(
                    mk_out(&st.stdout, false, &mut errmsg).unwrap_or(Sink::Stdio(Stdio::null())),
                );
                stderr = to_stdio(
                    mk_out(&st.stderr, true, &mut errmsg).unwrap_or(Sink::Stdio(Stdio::null())),
                );
            }
            if let Some((r, _w)) = next_pipe {
                prev_pipe = Some(r);
            }
            if let Some(msg) = errmsg {
                // like the wasm host: report on the stage's stderr, status 1, do not run it
                let _ = std::io::stderr().write_all(msg.as_bytes());
                statuses[i] = 1;
                children.push(None);
                drop((stdin, stdout, stderr));
                continue;
            }
            let name = st.argv.first().cloned().unwrap_or_default();
            let mut cmd = match name.as_str() {
                "python" | "python3" => Command::new("python3"),
                "node" | "nodejs" => Command::new("node"),
                "go" => Command::new("go"),
                "pip" | "pip3" => Command::new("pip3"),
                _ => {
                    let mut c = Command::new(&exe);
                    c.arg0(&name);
                    c
                }
            };
            cmd.args(&st.argv[1..])
                .env_clear()
                .envs(st.env.iter().map(|(k, v)| (k, v)))
                .env("PWD", &st.cwd);
            cmd.current_dir(&st.cwd)
                .stdin(stdin)
                .stdout(stdout)
                .stderr(stderr);
            match cmd.spawn() {
                Ok(c) => children.push(Some(c)),
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "sh: {name}: {e}");
                    statuses[i] = 127;
                    children.push(None);
                }
            }
            drop(cmd);
        }
        drop(prev_pipe);
        drop(cap_out_w);
        drop(cap_err_w);
        Running {
            children,
            statuses,
            feeders,
            t_out,
            t_err,
        }
    }
}
