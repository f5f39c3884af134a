//! Running user code: picks the interpreter for a language, prepares the sandbox's working
//! directory and environment, and hands the execution to the [`Engine`]. Go, which is compiled
//! first, has its own pipeline in [`go`].

mod go;
mod pip;

pub use pip::SITE_PACKAGES;

pub use go::TOOLCHAIN_MEMORY;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Settings;
use crate::engine::{
    DiskQuota, Engine, EngineConfig, EngineError, Entry, ExecResult, ExecSpec, ImageError, Kernel,
    KernelImage, Limits, PreparedModule, Tenant,
};
use crate::runtimes::data::{finish_turn, TurnMode};
use crate::runtimes::{Invocation, Language, RuntimeError, Runtimes};
use crate::sandbox::{PathError, SandboxFs, WORKSPACE};

/// Errors that stop an execution from starting (never the program's own failure).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The language's runtime is unknown or not installed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The engine could not load or start the module.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The working directory is outside the sandbox or cannot be created.
    #[error("working directory: {0}")]
    Workdir(#[from] PathError),
    /// A private scratch folder for a build could not be made or read.
    #[error("build scratch folder {path}")]
    Scratch {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configured package index is not a URL.
    #[error("package index '{0}' is not a URL")]
    PackageIndex(String),
    /// The language has no kernel (only the snapshot runtimes of python and javascript do).
    #[error("{0} has no kernel: kernels run python and javascript (with snapshots enabled)")]
    NoKernel(Language),
}

/// One request to run code.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The interpreter to run `code` with.
    pub language: Language,
    /// The program text.
    pub code: String,
    /// Request-level environment; wins over the sandbox's.
    pub env: BTreeMap<String, String>,
    /// Guest working directory (created if missing); `/workspace` when `None`.
    pub workdir: Option<String>,
    /// Wall-clock budget of the execution.
    pub timeout: Duration,
    /// The program's standard input.
    pub stdin: Vec<u8>,
    /// Where output is streamed as it is written (kernel cells).
    pub taps: crate::engine::OutputTaps,
    /// A standard input fed while the program runs (terminal sessions); replaces `stdin`.
    pub live_stdin: Option<crate::engine::LiveStdin>,
}

impl RunRequest {
    /// A request with default environment, working directory and the given timeout.
    pub fn new(language: Language, code: impl Into<String>, timeout: Duration) -> Self {
        Self {
            language,
            code: code.into(),
            env: BTreeMap::new(),
            workdir: None,
            timeout,
            stdin: Vec::new(),
            taps: Default::default(),
            live_stdin: None,
        }
    }
}

/// The engine plus the installed runtimes: everything needed to run code in a sandbox.
pub struct Executor {
    engine: Engine,
    runtimes: Runtimes,
    limits: Limits,
    /// Each language's loaded module, so the hot path does no file-system checks.
    prepared: std::sync::Mutex<std::collections::HashMap<Language, Arc<PreparedModule>>>,
    /// The engine's view of each sandbox tree that has run code (by its root): its instance
    /// share, cancellation and disk quota, kept across executions so the quota's measurement
    /// is reused.
    tenants: std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<Tenant>>>,
    max_sandbox_instances: u32,
    disk_quota_bytes: u64,
    /// Templates whose `python` is the data runtime.
    data_templates: Vec<String>,
    /// The data runtime was found installed.
    data_ready: std::sync::atomic::AtomicBool,
    /// Where the shell's `pip install` gets packages (`None`: installation disabled).
    package_index: Option<Arc<crate::packages::PackageIndex>>,
    /// The data runtime's packages, for `pip` (read when first needed).
    bundled_packages: pip::BundledPackages,
}

impl Executor {
    /// Builds the engine and reads the runtime manifest as configured by `settings`.
    pub fn new(settings: &Settings) -> Result<Self, ExecError> {
        let runtimes = Runtimes::new(&settings.cache_dir)?.use_snapshots(settings.snapshots);
        let engine = Engine::new(EngineConfig {
            cache_dir: runtimes.compiled_dir(),
            max_instances: settings.max_instances,
            // Go's compile and link stages get at least TOOLCHAIN_MEMORY whatever the user cap.
            max_memory_bytes: settings.limits.memory_bytes.max(TOOLCHAIN_MEMORY),
            fuel: settings.limits.fuel.is_some(),
            memory_budget_bytes: settings.memory_budget_bytes,
            max_open_files: settings.max_open_files,
            max_guest_fds: settings.max_guest_fds(),
            program_compiler: settings.program_compiler,
            program_cache_bytes: settings.program_cache_bytes,
        })?;
        Ok(Self {
            engine,
            runtimes,
            limits: settings.limits.clone(),
            prepared: Default::default(),
            tenants: Default::default(),
            max_sandbox_instances: settings.max_sandbox_instances,
            disk_quota_bytes: settings.disk_quota_bytes,
            data_templates: settings.data_templates.clone(),
            data_ready: Default::default(),
            package_index: match &settings.package_index {
                Some(url) => {
                    let parsed =
                        url::Url::parse(url).map_err(|_| ExecError::PackageIndex(url.clone()))?;
                    let index = crate::packages::PackageIndex::new(parsed)
                        .map_err(|e| ExecError::PackageIndex(format!("{url}: {e}")))?;
                    Some(Arc::new(index))
                }
                None => None,
            },
            bundled_packages: Default::default(),
        })
    }

    /// The language a request for `language` in a sandbox made from `template` runs: `python`
    /// is the data runtime in the templates configured for it, once that runtime is installed
    /// (until then the plain CPython, which `serve` warns about at start).
    pub fn language_for(&self, template: &str, language: Language) -> Language {
        if language == Language::Python
            && self.data_templates.iter().any(|t| t == template)
            && self.data_installed()
        {
            Language::DataPython
        } else {
            language
        }
    }

    /// Templates whose `python` is the data runtime (see [`Self::language_for`]).
    pub fn data_templates(&self) -> &[String] {
        &self.data_templates
    }

    /// Whether the data runtime is installed; once it is, it stays so (no more file checks).
    fn data_installed(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.data_ready.load(Ordering::Relaxed) {
            return true;
        }
        let ready = self.runtimes.is_installed(Language::DataPython);
        self.data_ready.store(ready, Ordering::Relaxed);
        ready
    }

    /// How long an execution waits for a free instance before it is refused
    /// ([`EngineError::Busy`]); zero (the default) refuses at once.
    pub fn set_admission_wait(&mut self, wait: Duration) {
        self.limits.admission_wait = wait;
    }

    /// Bytes a sandbox's files may occupy.
    pub fn disk_quota_bytes(&self) -> u64 {
        self.disk_quota_bytes
    }

    /// The tenant of the sandbox whose tree is `fs`, created on first use (which measures the
    /// tree once).
    pub fn tenant(&self, fs: &SandboxFs) -> Arc<Tenant> {
        if let Some(tenant) = self.tenants_lock().get(fs.root()) {
            return tenant.clone();
        }
        let root = fs.root().to_path_buf();
        let quota = DiskQuota::new(
            self.disk_quota_bytes,
            Box::new(move || crate::sandbox::disk_usage(&root)),
        );
        let tenant = Arc::new(Tenant::new(
            self.max_sandbox_instances,
            Some(Arc::new(quota)),
        ));
        self.tenants_lock()
            .entry(fs.root().to_path_buf())
            .or_insert(tenant)
            .clone()
    }

    /// Stops every running execution in the sandbox tree at `root` (it is being deleted) and
    /// forgets it.
    pub fn cancel_sandbox(&self, root: &Path) {
        if let Some(tenant) = self.tenants_lock().remove(root) {
            tenant.cancel();
        }
    }

    fn tenants_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<PathBuf, Arc<Tenant>>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine (for callers that run modules directly, such as benches).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The installed runtimes.
    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// Installs `language`'s runtime if missing (blocking; prints progress on stderr).
    pub fn ensure_installed(&self, language: Language) -> Result<(), ExecError> {
        Ok(self.runtimes.ensure_installed(language)?)
    }

    /// Compiles or loads `language`'s module ahead of the first execution.
    pub async fn warm_up(&self, language: Language) -> Result<(), ExecError> {
        if language == Language::Go {
            let toolchain = self.runtimes.go_toolchain()?;
            self.engine.prepare(&toolchain.compile).await?;
            self.engine.prepare(&toolchain.link).await?;
            return Ok(());
        }
        let invocation = self.runtimes.invocation(language, "")?;
        self.prepare(language, &invocation).await?;
        Ok(())
    }

    async fn prepare(
        &self,
        language: Language,
        invocation: &Invocation,
    ) -> Result<Arc<PreparedModule>, ExecError> {
        let cached = self.prepared_lock().get(&language).cloned();
        if let Some(module) = cached {
            return Ok(module);
        }
        let module = match &invocation.snapshot {
            Some(recipe) => {
                self.engine
                    .prepare_snapshot(&invocation.module, recipe)
                    .await?
            }
            None => self.engine.prepare(&invocation.module).await?,
        };
        self.prepared_lock().insert(language, module.clone());
        Ok(module)
    }

    fn prepared_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Language, Arc<PreparedModule>>> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `request` in the sandbox tree `fs`, starting from the sandbox environment
    /// `base_env`. The execution counts against the sandbox's instance share and disk quota and
    /// is stopped if the sandbox is deleted meanwhile ([`Self::cancel_sandbox`]).
    pub async fn run(
        &self,
        fs: &SandboxFs,
        base_env: &BTreeMap<String, String>,
        request: RunRequest,
    ) -> Result<ExecResult, ExecError> {
        let language = request.language;
        if language == Language::Go {
            return self.run_go(fs, base_env, request).await;
        }
        let invocation = self.runtimes.invocation(language, &request.code)?;
        let module = self.prepare(language, &invocation).await?;
        let spec = self.spec(fs, base_env, request, invocation, TurnMode::Run)?;
        let result = match language {
            Language::Bash => {
                let mut spawn = self.runtimes.spawn_config()?;
                spawn.go = self
                    .go_builds()
                    .ok()
                    .map(|builds| Arc::new(builds) as Arc<dyn crate::engine::ProgramBuilder>);
                spawn.pip = Some(Arc::new(pip::SandboxPip {
                    index: self.package_index.clone(),
                    fs: fs.clone(),
                    quota: self.tenant(fs).disk().cloned(),
                    bundled: self.bundled_packages.clone(),
                    data_archive: self.runtimes.data_library_archive(),
                }));
                // `python3` in the shell sees the sandbox's installed packages too.
                if let Some(python) = spawn.python.as_mut() {
                    for (key, value) in python.env.iter_mut() {
                        if key == "PYTHONPATH" {
                            value.push(':');
                            value.push_str(SITE_PACKAGES);
                        }
                    }
                }
                self.engine.execute_with_spawn(&module, spec, spawn).await?
            }
            _ => self.engine.execute(&module, spec).await?,
        };
        Ok(result)
    }

    /// The execution of `request` in `fs`: working directory (created if missing), environment
    /// layered default < sandbox < request < runtime, mounts, limits.
    fn spec(
        &self,
        fs: &SandboxFs,
        base_env: &BTreeMap<String, String>,
        request: RunRequest,
        invocation: Invocation,
        mode: TurnMode,
    ) -> Result<ExecSpec, ExecError> {
        let workdir = fs.ensure_workdir(request.workdir.as_deref().unwrap_or(WORKSPACE))?;
        let mut env: BTreeMap<String, String> = default_env();
        env.extend(base_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.extend(request.env);
        env.extend(invocation.env);
        env.insert("PWD".into(), workdir);
        // Packages `pip install` put in the sandbox (checked per run: a later install counts).
        if matches!(request.language, Language::Python | Language::DataPython)
            && pip::has_site_packages(fs)
        {
            let path = match env.get("PYTHONPATH") {
                Some(existing) if !existing.is_empty() => format!("{SITE_PACKAGES}:{existing}"),
                _ => SITE_PACKAGES.to_string(),
            };
            env.insert("PYTHONPATH".into(), path);
        }
        Ok(ExecSpec {
            entry: finish_turn(invocation.entry, mode, &env),
            argv: invocation.argv,
            env: env.into_iter().collect(),
            mounts: [fs.mount(), self.runtimes.support_mount()]
                .into_iter()
                .chain(invocation.mounts)
                .collect(),
            stdin: request.stdin,
            live_stdin: request.live_stdin,
            taps: request.taps,
            limits: Limits {
                timeout: request.timeout,
                tenant: Some(self.tenant(fs)),
                ..self.limits.clone()
            },
        })
    }

    /// The snapshot module and execution spec of a kernel cell (argv `[argv0, "<cell>", code]`).
    async fn kernel_spec(
        &self,
        fs: &SandboxFs,
        base_env: &BTreeMap<String, String>,
        request: RunRequest,
    ) -> Result<(Arc<PreparedModule>, ExecSpec), ExecError> {
        let language = request.language;
        if language == Language::Go {
            return Err(ExecError::NoKernel(language));
        }
        let mut invocation = self.runtimes.invocation(language, "")?;
        if invocation.snapshot.is_none()
            || !matches!(invocation.entry, Entry::Export(_) | Entry::Turn(_))
        {
            return Err(ExecError::NoKernel(language));
        }
        let module = self.prepare(language, &invocation).await?;
        let argv0 = invocation.argv.first().cloned().unwrap_or_default();
        invocation.argv = vec![argv0, "<cell>".into(), request.code.clone()];
        if let Entry::Turn(code) = &mut invocation.entry {
            code.clone_from(&request.code);
        }
        let spec = self.spec(fs, base_env, request, invocation, TurnMode::Cell)?;
        Ok((module, spec))
    }

    /// Starts a kernel for `language` in the sandbox tree `fs`.
    pub async fn start_kernel(
        &self,
        fs: &SandboxFs,
        language: Language,
    ) -> Result<Kernel, ExecError> {
        let request = RunRequest::new(language, "", self.limits.timeout);
        let (module, spec) = self.kernel_spec(fs, &BTreeMap::new(), request).await?;
        Ok(self.engine.start_kernel(&module, &spec).await?)
    }

    /// Restores a kernel for `language` from an image file's bytes; `Ok(Err(_))` when the image
    /// cannot be used (corrupt, another runtime build), so the caller starts afresh.
    pub async fn restore_kernel(
        &self,
        fs: &SandboxFs,
        language: Language,
        image: &[u8],
    ) -> Result<Result<Kernel, ImageError>, ExecError> {
        let request = RunRequest::new(language, "", self.limits.timeout);
        let (module, spec) = self.kernel_spec(fs, &BTreeMap::new(), request).await?;
        let image = match KernelImage::decode(image, &module) {
            Ok(image) => image,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self
            .engine
            .restore_kernel(&module, &spec, &image)
            .await?))
    }

    /// Runs one cell of `request` (its code, env, workdir, timeout) in `kernel`.
    pub async fn run_cell(
        &self,
        kernel: &mut Kernel,
        fs: &SandboxFs,
        base_env: &BTreeMap<String, String>,
        request: RunRequest,
    ) -> Result<crate::engine::CellOutcome, ExecError> {
        let (_, spec) = self.kernel_spec(fs, base_env, request).await?;
        Ok(kernel.run_cell(&spec).await?)
    }
}

/// The environment code in a sandbox whose own variables are `sandbox_env` starts from (before
/// per-request variables and the runtime's own).
pub fn effective_env(sandbox_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = default_env();
    env.extend(sandbox_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// The environment every execution starts from.
fn default_env() -> BTreeMap<String, String> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", WORKSPACE),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("USER", "sandbox"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
