//! Process-wide settings: where data and caches live and the default limits, from the
//! environment (`WASMBOX_*`) with sensible defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::Limits;

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
}

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
        Self {
            data_dir,
            cache_dir,
            max_instances: env_number("WASMBOX_MAX_INSTANCES").unwrap_or(128),
            snapshots: std::env::var("WASMBOX_SNAPSHOTS").map_or(true, |v| v.trim() != "0"),
            limits: Limits {
                timeout: Duration::from_secs(60),
                memory_bytes: env_number::<u64>("WASMBOX_MEMORY_MB")
                    .map_or(defaults.memory_bytes, |mb| mb << 20),
                output_bytes: env_number("WASMBOX_OUTPUT_BYTES").unwrap_or(defaults.output_bytes),
                fuel: env_number("WASMBOX_FUEL"),
            },
        }
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}
