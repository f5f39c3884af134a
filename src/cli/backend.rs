//! Where a command acts: this process (the local data directory) or a server (`--server`).
//! Both answer with the same types, so the printer shows either the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use wasmbox::api::models::{ExecutionResponse, SandboxInfo};
use wasmbox::config::Settings;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::{NewSandbox, Sandbox, SandboxFs, SandboxStore};

use super::remote::{Remote, RemoteArgs};
use super::{tokio_runtime, CliError};

/// What `wasmbox run` executes, and where.
pub struct RunSpec {
    pub request: RunRequest,
    /// Existing sandbox; `None` runs in a temporary one, deleted afterwards.
    pub sandbox: Option<String>,
    /// The template of the temporary sandbox (`code-interpreter` by default on a server; in
    /// process, none: the plain runtimes). It picks the runtime as on a server: `python` in
    /// `code-interpreter` is the data runtime.
    pub template: Option<String>,
}

/// The local data directory or a server.
pub enum Backend<'a> {
    Local(&'a Settings),
    Remote(Remote),
}

impl<'a> Backend<'a> {
    /// The server named by `remote`, else this process with `settings`.
    pub fn new(settings: &'a Settings, remote: &RemoteArgs) -> Result<Self, CliError> {
        Ok(match remote.client()? {
            Some(remote) => Backend::Remote(remote),
            None => Backend::Local(settings),
        })
    }

    /// How a local sandbox is shown: as a server would show it, with no agent URL.
    fn local_info(settings: &Settings, sandbox: &Sandbox) -> SandboxInfo {
        SandboxInfo::new(sandbox, None, settings.limits.memory_bytes >> 20)
    }

    /// The local sandbox registry, with expired sandboxes reaped as the server would have.
    fn store(settings: &Settings) -> Result<SandboxStore, CliError> {
        let store = SandboxStore::open(&settings.data_dir)?;
        store.reap_expired();
        Ok(store)
    }

    /// Creates a sandbox.
    pub fn create_sandbox(
        &self,
        template: String,
        env: BTreeMap<String, String>,
        timeout_seconds: Option<u64>,
    ) -> Result<SandboxInfo, CliError> {
        match self {
            Backend::Local(settings) => {
                let sandbox = Self::store(settings)?.create(NewSandbox {
                    template,
                    env,
                    timeout_seconds,
                })?;
                Ok(Self::local_info(settings, &sandbox))
            }
            Backend::Remote(remote) => remote.create_sandbox(&template, env, timeout_seconds),
        }
    }

    /// Every sandbox, oldest first.
    pub fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>, CliError> {
        match self {
            Backend::Local(settings) => Ok(Self::store(settings)?
                .list()
                .iter()
                .map(|sandbox| Self::local_info(settings, sandbox))
                .collect()),
            Backend::Remote(remote) => remote.list_sandboxes(),
        }
    }

    /// The sandbox `id`.
    pub fn get_sandbox(&self, id: &str) -> Result<SandboxInfo, CliError> {
        match self {
            Backend::Local(settings) => {
                Ok(Self::local_info(settings, &Self::store(settings)?.get(id)?))
            }
            Backend::Remote(remote) => remote.get_sandbox(id),
        }
    }

    /// Deletes the sandbox `id` and its files.
    pub fn delete_sandbox(&self, id: &str) -> Result<(), CliError> {
        match self {
            Backend::Local(settings) => Ok(Self::store(settings)?.delete(id)?),
            Backend::Remote(remote) => remote.delete_sandbox(id),
        }
    }

    /// Runs `spec` and returns its result.
    pub fn run(&self, spec: RunSpec) -> Result<ExecutionResponse, CliError> {
        match self {
            Backend::Local(settings) => run_local(settings, spec),
            Backend::Remote(remote) => remote.run(spec),
        }
    }
}

fn run_local(settings: &Settings, spec: RunSpec) -> Result<ExecutionResponse, CliError> {
    let RunSpec {
        mut request,
        sandbox,
        template,
    } = spec;
    let executor = Executor::new(settings)?;
    let existing = match &sandbox {
        Some(id) => {
            let store = SandboxStore::open(&settings.data_dir)?;
            let sandbox = store.get(id)?;
            Some((store, sandbox))
        }
        None => None,
    };
    // The runtime a server would pick for this sandbox's (or the named) template.
    if let Some(template) = existing
        .as_ref()
        .map(|(_, s)| &s.template)
        .or(template.as_ref())
    {
        request.language = executor.language_for(template, request.language);
    }
    let language = request.language;
    executor.ensure_installed(language)?;

    let (fs, base_env, temp) = match existing {
        Some((store, sandbox)) => (store.files(&sandbox.id)?, sandbox.env, None),
        None => {
            let runs = settings.data_dir.join("runs");
            std::fs::create_dir_all(&runs)
                .map_err(|e| CliError::Other(format!("cannot create {}: {e}", runs.display())))?;
            let temp = tempfile::Builder::new()
                .prefix("run-")
                .tempdir_in(&runs)
                .map_err(|e| CliError::Other(format!("cannot create a temporary sandbox: {e}")))?;
            let fs = SandboxFs::create(temp.path())
                .map_err(|e| CliError::Other(format!("cannot create a temporary sandbox: {e}")))?;
            // Removed below without recursion: the guest shapes the tree (see sandbox::remove_tree).
            let temp = temp.keep();
            (fs, BTreeMap::new(), Some(temp))
        }
    };

    let result = tokio_runtime()?.block_on(async {
        warm_up_with_progress(&executor, language).await?;
        executor
            .run(&fs, &base_env, request)
            .await
            .map_err(CliError::from)
    });
    if let Some(temp) = temp {
        if let Err(e) = wasmbox::sandbox::remove_tree(&temp) {
            eprintln!("wasmbox: warning: could not remove {}: {e}", temp.display());
        }
    }
    Ok(ExecutionResponse::new(&result?, language))
}

/// Loads the runtime's compiled module, telling the user when that is the slow first compile.
async fn warm_up_with_progress(executor: &Executor, language: Language) -> Result<(), CliError> {
    let warm = executor.warm_up(language);
    tokio::pin!(warm);
    tokio::select! {
        done = &mut warm => return done.map_err(CliError::from),
        () = tokio::time::sleep(Duration::from_millis(1500)) => {
            eprintln!("wasmbox: compiling the {language} runtime for this machine (first use only)…");
        }
    }
    warm.await.map_err(CliError::from)
}
