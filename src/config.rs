//! Process-wide settings: where data and caches live and the default limits, from the
//! environment (`WASMBOX_*`) with sensible defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::{Limits, ProgramCompiler};

/// Settings shared by the CLI and the server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Sandboxes and server state (`WASMBOX_DATA_DIR`, default `$XDG_DATA_HOME/wasmbox`).
    pub data_dir: PathBuf,
    /// Runtimes and compiled modules (`WASMBOX_CACHE_DIR`, default `$XDG_CACHE_HOME/wasmbox`).
    pub cache_dir: PathBuf,
    /// Instances alive at once (`WASMBOX_MAX_INSTANCES`, default 128).
    pub max_instances: u32,
    /// Run interpreters from pre-initialised snapshots where available (`WASMBOX_SNAPSHOTS=0`
    /// turns this off, e.g. to compare against the plain command modules).
    pub snapshots: bool,
    /// Default per-execution limits (`WASMBOX_MEMORY_MB`, `WASMBOX_OUTPUT_BYTES`, `WASMBOX_FUEL`).
    pub limits: Limits,
    /// Upper bound for the sum of the memory caps of live instances (`WASMBOX_MEMORY_BUDGET_MB`,
    /// default three quarters of the machine's RAM).
    pub memory_budget_bytes: u64,
    /// Instances one sandbox may run at once, shell children included
    /// (`WASMBOX_MAX_SANDBOX_INSTANCES`, default a quarter of the pool, at least 4).
    pub max_sandbox_instances: u32,
    /// Bytes a sandbox's files may occupy (`WASMBOX_DISK_QUOTA_MB`, default 1024).
    pub disk_quota_bytes: u64,
    /// Files one instance may hold open (`WASMBOX_MAX_OPEN_FILES`, default 256).
    pub max_open_files: u32,
    /// Kernels live at once across all sandboxes (`WASMBOX_MAX_KERNELS`, default half the
    /// pool); beyond it the least recently used are hibernated to disk.
    pub max_live_kernels: u32,
    /// Linear memory live kernels may hold together (`WASMBOX_KERNEL_MEMORY_MB`, default half
    /// the memory budget); beyond it the least recently used are hibernated to disk.
    pub max_kernel_memory_bytes: u64,
    /// Write a kernel's image after every cell (`WASMBOX_KERNEL_DURABILITY=cell`, the default)
    /// or only when it is hibernated (`hibernate`: faster cells, a crash loses recent state).
    pub kernel_image_each_cell: bool,
    /// A kernel idle this long is hibernated (`WASMBOX_KERNEL_IDLE_SECONDS`, default 600).
    pub kernel_idle: Duration,
    /// Hosts `/execute/async` may call back (`WASMBOX_CALLBACK_HOSTS`, comma-separated, plus
    /// `serve --allow-callback-host`); loopback is always allowed, nothing else by default.
    pub callback_hosts: Vec<String>,
    /// The compiler for Go programs' machine code (`WASMBOX_PROGRAM_COMPILER`: `winch`, the
    /// default, or `cranelift` at `opt-level=none`).
    pub program_compiler: ProgramCompiler,
    /// Bytes of compiled Go programs kept on disk, shared by all sandboxes
    /// (`WASMBOX_PROGRAM_CACHE_MB`, default 512).
    pub program_cache_bytes: u64,
    /// Templates whose `python` runs on the data runtime (numpy, pandas, matplotlib, ...)
    /// instead of the plain CPython (`WASMBOX_DATA_TEMPLATES`, comma-separated; default
    /// `code-interpreter`, empty for none). `python-data` picks it in any sandbox.
    pub data_templates: Vec<String>,
    /// The package index `pip install` in a sandbox uses: the root of a "simple" repository
    /// API that answers in JSON (`WASMBOX_PACKAGE_INDEX`, `serve --package-index`); none by
    /// default, which disables installation.
    pub package_index: Option<String>,
}

/// The template whose `python` is the data runtime unless `WASMBOX_DATA_TEMPLATES` says
/// otherwise: HopX's `code-interpreter` is the one its users run pandas and plots in.
pub const DEFAULT_DATA_TEMPLATE: &str = "code-interpreter";

/// Descriptors of the process's limit kept for the server itself (listening, connections, its
/// own files); guests share the rest.
pub const FD_RESERVE: u64 = 2048;

impl Settings {
    /// Reads the settings from the environment.
    pub fn from_env() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(fallback))
        };
        let data_dir = env_path("WASMBOX_DATA_DIR")
            .unwrap_or_else(|| xdg("XDG_DATA_HOME", ".local/share").join("wasmbox"));
        let cache_dir = env_path("WASMBOX_CACHE_DIR")
            .unwrap_or_else(|| xdg("XDG_CACHE_HOME", ".cache").join("wasmbox"));
        let defaults = Limits::default();
        let max_instances = env_number("WASMBOX_MAX_INSTANCES").unwrap_or(128);
        let memory_budget_bytes = env_number::<u64>("WASMBOX_MEMORY_BUDGET_MB")
            .map_or_else(default_memory_budget, |mb| mb << 20);
        Self {
            data_dir,
            cache_dir,
            max_instances,
            snapshots: std::env::var("WASMBOX_SNAPSHOTS").map_or(true, |v| v.trim() != "0"),
            limits: Limits {
                timeout: Duration::from_secs(60),
                memory_bytes: env_number::<u64>("WASMBOX_MEMORY_MB")
                    .map_or(defaults.memory_bytes, |mb| mb << 20),
                output_bytes: env_number("WASMBOX_OUTPUT_BYTES").unwrap_or(defaults.output_bytes),
                fuel: env_number("WASMBOX_FUEL"),
                // In-process callers wait for capacity; the server sets its `--queue-wait`.
                admission_wait: Duration::from_secs(30),
                ..defaults
            },
            memory_budget_bytes,
            max_sandbox_instances: env_number("WASMBOX_MAX_SANDBOX_INSTANCES")
                .unwrap_or((max_instances / 4).max(4)),
            disk_quota_bytes: env_number::<u64>("WASMBOX_DISK_QUOTA_MB").unwrap_or(1024) << 20,
            max_open_files: env_number("WASMBOX_MAX_OPEN_FILES").unwrap_or(256),
            max_live_kernels: env_number("WASMBOX_MAX_KERNELS")
                .unwrap_or((max_instances / 2).max(1)),
            max_kernel_memory_bytes: env_number::<u64>("WASMBOX_KERNEL_MEMORY_MB")
                .map_or(memory_budget_bytes / 2, |mb| mb << 20),
            kernel_idle: Duration::from_secs(
                env_number("WASMBOX_KERNEL_IDLE_SECONDS").unwrap_or(600),
            ),
            kernel_image_each_cell: std::env::var("WASMBOX_KERNEL_DURABILITY")
                .map_or(true, |v| v.trim() != "hibernate"),
            callback_hosts: std::env::var("WASMBOX_CALLBACK_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            program_compiler: std::env::var("WASMBOX_PROGRAM_COMPILER")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            program_cache_bytes: env_number::<u64>("WASMBOX_PROGRAM_CACHE_MB").unwrap_or(512) << 20,
            data_templates: std::env::var("WASMBOX_DATA_TEMPLATES")
                .map(|v| {
                    v.split(',')
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .unwrap_or_else(|_| vec![DEFAULT_DATA_TEMPLATE.to_string()]),
            package_index: std::env::var("WASMBOX_PACKAGE_INDEX")
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
        }
    }

    /// Descriptors all guests together may hold: the process's open-file limit less
    /// [`FD_RESERVE`].
    pub fn max_guest_fds(&self) -> u64 {
        open_file_limit().saturating_sub(FD_RESERVE).max(64)
    }
}

/// Three quarters of the machine's RAM (8 GiB if it cannot be read).
fn default_memory_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kib| kib << 10);
    total.map_or(8 << 30, |bytes| bytes / 4 * 3)
}

/// The process's soft limit on open files.
fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}
