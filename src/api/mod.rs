//! The HopX-compatible HTTP service: a thin axum layer over [`Executor`] and [`SandboxStore`].
//!
//! Two planes share one listener: the control plane (`/health`, `/v1/sandboxes…`,
//! `/v1/templates…`, account API key) and each sandbox's agent API under `/sandboxes/{id}/…`
//! (sandbox token or account key), which is what a sandbox's `public_host` points at. The wire
//! format follows what the official clients actually send and parse (`shared/PROTOCOL.md`).

mod agent;
mod auth;
mod cluster;
mod control;
mod error;
mod extract;
mod files;
mod hosts;
mod kernels;
pub mod listener;
pub mod models;
mod observe;
mod processes;
mod server_metrics;
mod stream;
mod terminal;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Extension;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::Settings;
use crate::exec::{ExecError, Executor};
use crate::runtimes::Language;
use crate::sandbox::{SandboxError, SandboxStore};

pub use auth::KeySource;
pub use cluster::ClusterConfig;
pub use error::ApiError;
pub use listener::ConnectionLimits;

/// Largest request body in general.
pub const BODY_LIMIT: usize = 10 << 20;
/// Largest body for `/files/write` and `/files/upload`.
pub const FILE_BODY_LIMIT: usize = 100 << 20;
/// Lifetime of a sandbox token (the SDKs refresh when less than an hour is left).
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often expired sandboxes are reaped.
const REAP_INTERVAL: Duration = Duration::from_secs(10);
/// How long running requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Failures starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// The account key or signing secret could not be read or created.
    #[error("server credentials in {path}: {source}")]
    Secrets {
        /// The credentials file.
        path: PathBuf,
        /// Why it could not be used.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox registry could not be opened.
    #[error(transparent)]
    Store(#[from] SandboxError),
    /// The runtimes or the engine could not be set up.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] listener::TlsError),
    /// The accept loop failed.
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Data directory, cache directory, instance pool size and limits.
    pub settings: Settings,
    /// Address the HTTP service listens on.
    pub listen: SocketAddr,
    /// Required account key; `None` uses (or generates) `<data-dir>/server/api_key`.
    pub api_key: Option<String>,
    /// Base URL clients reach this server at (for `public_host`); default `http://<listen>`
    /// (`https://` with TLS).
    pub public_url: Option<String>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<listener::TlsFiles>,
    /// Give each sandbox the host `{id}.{domain}` and route requests for it by `Host`.
    pub sandbox_domain: Option<String>,
    /// How long an execution waits for a free slot before the request gets 429.
    pub queue_wait: Duration,
    /// Connection cap, header and idle timeouts.
    pub connections: ConnectionLimits,
}

/// Shared state of the handlers.
pub struct ServerState {
    store: SandboxStore,
    executor: Executor,
    auth: auth::Auth,
    max_concurrency: usize,
    /// Wakes the housekeeping task early (after a delete, to empty the trash).
    housekeeping: tokio::sync::Notify,
    /// Each sandbox's `public_host`, and the routing of requests for sandbox hosts.
    public_hosts: hosts::PublicHosts,
    memory_mb: u64,
    /// Live interpreters of `/execute/ipython`, per sandbox and language.
    kernels: crate::kernels::Kernels,
    /// Kernels idle this long are hibernated by the housekeeping task.
    kernel_idle: Duration,
    /// Background executions and commands, per sandbox.
    processes: crate::processes::Processes,
    /// Per-sandbox counters of ended runs, for the metrics routes.
    run_stats: observe::RunStats,
    /// Each sandbox's disk quota (reported by the metrics routes).
    disk_quota_bytes: u64,
    /// Where `/execute/async` may deliver results.
    callbacks: crate::webhooks::CallbackPolicy,
    /// File watches open, server-wide.
    watches: watch::WatchCount,
    /// Membership and forwarding in cluster mode; `None` on a single node.
    cluster: Option<Arc<cluster::Cluster>>,
}

type AppState = Arc<ServerState>;

impl ServerState {
    /// Opens the store and secrets and builds the engine for a server reached at `local_addr`
    /// (unless `config.public_url` says otherwise). Loads no runtime.
    fn open(
        config: &ServerConfig,
        cluster: Option<&ClusterSetup>,
        local_addr: SocketAddr,
    ) -> Result<(Self, KeySource), ServeError> {
        let settings = &config.settings;
        let data_dir = settings.data_dir.clone();
        let mut store = SandboxStore::open(&data_dir)?;
        if let Some(setup) = cluster {
            store.set_node(&setup.config.node_id);
        }
        let (auth, key_source) = auth::Auth::load(
            &data_dir,
            config.api_key.clone(),
            cluster.and_then(|c| c.secret.as_deref()),
            TOKEN_TTL,
        )
        .map_err(|source| ServeError::Secrets {
            path: data_dir.join("server"),
            source,
        })?;
        // Before the engine sizes its guest-descriptor budget from the limit.
        listener::raise_fd_limit();
        let mut executor = Executor::new(settings)?;
        executor.set_admission_wait(config.queue_wait);
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let public_base = match &config.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if local_addr.ip().is_unspecified() => {
                format!("{scheme}://127.0.0.1:{}", local_addr.port())
            }
            None => format!("{scheme}://{local_addr}"),
        };
        let public_hosts = hosts::PublicHosts::new(&public_base, config.sandbox_domain.as_deref());
        let max_concurrency = usize::try_from(settings.max_instances.max(1)).unwrap_or(1);
        let state = ServerState {
            store,
            executor,
            auth,
            max_concurrency,
            housekeeping: tokio::sync::Notify::new(),
            public_hosts,
            memory_mb: settings.limits.memory_bytes >> 20,
            kernels: crate::kernels::Kernels::new(
                settings.max_live_kernels as usize,
                settings.max_kernel_memory_bytes,
                if settings.kernel_image_each_cell {
                    crate::kernels::Durability::EachCell
                } else {
                    crate::kernels::Durability::OnHibernate
                },
            ),
            kernel_idle: settings.kernel_idle,
            processes: crate::processes::Processes::new(),
            run_stats: observe::RunStats::default(),
            disk_quota_bytes: settings.disk_quota_bytes,
            callbacks: crate::webhooks::CallbackPolicy::new(&settings.callback_hosts),
            watches: watch::WatchCount::default(),
            cluster: cluster.map(|c| cluster::Cluster::new(&c.config)),
        };
        Ok((state, key_source))
    }

    /// Deletes sandbox `id`: its directory moves to the trash (from then on it is gone, even
    /// across a crash), its running executions are stopped, and its files are removed in the
    /// background.
    fn delete_sandbox(&self, id: &str) -> Result<(), SandboxError> {
        self.store.delete(id)?;
        self.executor.cancel_sandbox(&self.store.fs_root(id));
        self.kernels.remove_sandbox(id);
        self.processes.remove_sandbox(id);
        self.run_stats.remove(id);
        self.housekeeping.notify_one();
        Ok(())
    }
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    local_addr: SocketAddr,
    key_source: KeySource,
    connections: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Cluster mode for [`Server::bind_cluster`].
#[derive(Clone, Debug)]
pub struct ClusterSetup {
    /// Node id and peers.
    pub config: ClusterConfig,
    /// Signs sandbox tokens on every node (so any node's token works on the owner); `None`
    /// keeps each node's own secret (tokens then work only on the node that minted them,
    /// which is the owner, since token calls are forwarded there).
    pub secret: Option<String>,
}

impl Server {
    /// Opens the store and secrets, builds the engine, and binds the listener.
    pub async fn bind(config: ServerConfig) -> Result<Self, ServeError> {
        Self::bind_cluster(config, None).await
    }

    /// [`Self::bind`] as one node of a cluster.
    pub async fn bind_cluster(
        config: ServerConfig,
        cluster: Option<ClusterSetup>,
    ) -> Result<Self, ServeError> {
        let tls = config
            .tls
            .as_ref()
            .map(listener::tls_acceptor)
            .transpose()?;
        let listener = listener::bind(config.listen).map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr()?;
        let (state, key_source) = ServerState::open(&config, cluster.as_ref(), local_addr)?;
        Ok(Self {
            listener,
            state: Arc::new(state),
            local_addr,
            key_source,
            connections: config.connections,
            tls,
        })
    }

    /// `https` when the server speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the account key came from.
    pub fn key_source(&self) -> &KeySource {
        &self.key_source
    }

    /// Serves until `shutdown` resolves, then lets running requests finish for a short grace
    /// period (dropping the rest cancels their executions, which frees their instances).
    /// Accept errors never end it (see [`listener`]).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let state = self.state;
        warm_up(&state);
        let reaper = tokio::spawn(housekeeping(state.clone()));
        let relief = tokio::spawn(relieve_memory_pressure(state.clone()));
        let membership = state.cluster.clone().map(|c| tokio::spawn(c.watch()));
        listener::serve(
            self.listener,
            router(state.clone()),
            self.tls,
            self.connections,
            shutdown,
            SHUTDOWN_GRACE,
        )
        .await;
        reaper.abort();
        relief.abort();
        if let Some(membership) = membership {
            membership.abort();
        }
        // Kernel images are written after every cell; this catches any that were not.
        state.kernels.hibernate_all().await;
        Ok(())
    }
}

/// The complete router over a fresh state for `config`, bound to no socket, with no runtime
/// warmed and no housekeeping task: HTTP behaviour that runs no guest code can be tested
/// in-process with `tower::ServiceExt::oneshot`, fast and without runtimes installed.
pub fn in_process_router(config: &ServerConfig) -> Result<Router, ServeError> {
    let (state, _) = ServerState::open(config, None, config.listen)?;
    Ok(router(Arc::new(state)))
}

/// The complete router.
fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(control::health))
        .route("/metrics", get(server_metrics::metrics))
        .route("/v1/sandboxes", post(control::create).get(control::list))
        .route(
            "/v1/sandboxes/{id}",
            get(control::get).delete(control::delete),
        )
        .route("/v1/sandboxes/{id}/timeout", put(control::set_timeout))
        .route(
            "/v1/sandboxes/{id}/token/refresh",
            post(control::refresh_token),
        )
        .route("/v1/sandboxes/{id}/pause", post(control::pause))
        .route("/v1/sandboxes/{id}/resume", post(control::resume))
        // The old client's names for pause and resume.
        .route("/v1/sandboxes/{id}/stop", post(control::pause))
        .route("/v1/sandboxes/{id}/start", post(control::resume))
        .route("/v1/templates", get(control::list_templates))
        .route(
            "/v1/templates/{name}",
            get(control::get_template).delete(control::delete_template),
        )
        .route("/sandboxes/{id}/health", get(agent::health))
        .route("/sandboxes/{id}/info", get(agent::info))
        .route("/sandboxes/{id}/execute", post(agent::execute))
        .route("/sandboxes/{id}/commands/run", post(agent::run_command))
        .route(
            "/sandboxes/{id}/execute/ipython",
            post(kernels::execute_cell),
        )
        // The WebSocket routes also at the origin root, the sandbox named by its token: the
        // official clients' WebSocket helpers keep only the host of `public_host`.
        .route("/stream/ipython", get(stream::cells))
        .route("/execute/stream", get(stream::executions))
        .route("/stream", get(stream::executions))
        .route("/commands/stream", get(stream::commands))
        .route("/files/watch", get(watch::files))
        .route("/terminal", get(terminal::terminal))
        .route("/sandboxes/{id}/terminal", get(terminal::terminal))
        .route("/sandboxes/{id}/files/watch", get(watch::files))
        .route("/sandboxes/{id}/stream/ipython", get(stream::cells))
        .route("/sandboxes/{id}/execute/stream", get(stream::executions))
        .route("/sandboxes/{id}/stream", get(stream::executions))
        .route("/sandboxes/{id}/commands/stream", get(stream::commands))
        .route(
            "/sandboxes/{id}/execute/async",
            post(processes::execute_async),
        )
        .route(
            "/sandboxes/{id}/execute/background",
            post(processes::execute_background),
        )
        .route(
            "/sandboxes/{id}/commands/background",
            post(processes::command_background),
        )
        .route("/sandboxes/{id}/ping", get(observe::ping))
        .route("/sandboxes/{id}/metrics", get(observe::snapshot))
        .route("/sandboxes/{id}/metrics/snapshot", get(observe::snapshot))
        .route(
            "/sandboxes/{id}/metrics/prometheus",
            get(observe::prometheus),
        )
        .route("/sandboxes/{id}/system", get(observe::system))
        .route("/sandboxes/{id}/cache/stats", get(observe::cache_stats))
        .route("/sandboxes/{id}/cache/clear", post(observe::cache_clear))
        .route("/sandboxes/{id}/execute/processes", get(processes::list))
        .route("/sandboxes/{id}/processes", get(processes::list))
        .route(
            "/sandboxes/{id}/execute/processes/{process_id}",
            get(processes::get),
        )
        .route(
            "/sandboxes/{id}/execute/kill/{process_id}",
            post(processes::kill),
        )
        .route(
            "/sandboxes/{id}/processes/{process_id}/kill",
            post(processes::kill),
        )
        .route(
            "/sandboxes/{id}/execute/kill",
            axum::routing::delete(processes::kill_by_query),
        )
        .route("/sandboxes/{id}/jupyter/sessions", get(kernels::sessions))
        .route("/sandboxes/{id}/kernels", get(kernels::sessions))
        .route(
            "/sandboxes/{id}/kernels/{kernel}",
            axum::routing::delete(kernels::delete),
        )
        .route(
            "/sandboxes/{id}/kernels/{kernel}/restart",
            post(kernels::restart),
        )
        .route(
            "/sandboxes/{id}/env",
            get(agent::get_env)
                .put(agent::put_env)
                .patch(agent::patch_env)
                .delete(agent::delete_env),
        )
        .route("/sandboxes/{id}/files/read", get(files::read))
        .route("/sandboxes/{id}/files/download", get(files::download))
        .route(
            "/sandboxes/{id}/files/write",
            post(files::write).layer(Extension(extract::BodyLimit(FILE_BODY_LIMIT))),
        )
        .route(
            "/sandboxes/{id}/files/upload",
            post(files::upload).layer(DefaultBodyLimit::max(FILE_BODY_LIMIT)),
        )
        .route("/sandboxes/{id}/files/list", get(files::list))
        .route("/sandboxes/{id}/files/exists", get(files::exists))
        .route(
            "/sandboxes/{id}/files/remove",
            delete(files::remove).post(files::remove),
        )
        .route("/sandboxes/{id}/files/mkdir", post(files::mkdir))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::route,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(axum::middleware::from_fn(error::request_context));
    let hosts = state.public_hosts.clone();
    let routes = routes.with_state(state);
    // Sandbox hosts are rewritten before routing (a layer on the router would run after it).
    Router::new().fallback_service(
        tower::ServiceBuilder::new()
            .map_request(move |request| hosts.route(request))
            .service(routes),
    )
}

/// Loads the installed runtimes' compiled modules so the first request does not pay for it.
fn warm_up(state: &AppState) {
    let data_templates = state.executor.data_templates();
    if !data_templates.is_empty() && !state.executor.runtimes().is_installed(Language::DataPython) {
        tracing::warn!(
            templates = %data_templates.join(","),
            "the data runtime is not installed: `python` in these templates runs on the plain CPython until `wasmbox runtimes fetch python-data`"
        );
    }
    for language in Language::ALL {
        let runtimes = state.executor.runtimes();
        if runtimes.module_path(language).is_err() {
            continue;
        }
        if !runtimes.is_installed(language) {
            tracing::warn!(%language, "runtime not installed; run `wasmbox runtimes fetch` (executions will fail with 503)");
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = state.executor.warm_up(language).await {
                tracing::warn!(%language, error = %e, "warming up the runtime failed");
            }
        });
    }
}

/// Whenever an execution or cell waits for host memory or a pool slot, hibernates the least
/// recently used idle kernel (its image goes to disk, its memory and slot back to the host);
/// the waiter retries on the release and signals again if that was not enough.
async fn relieve_memory_pressure(state: AppState) {
    loop {
        state.executor.engine().budget().pressure().await;
        if state.kernels.relieve().await {
            tracing::info!("a kernel was hibernated to free memory for a waiting execution");
        }
    }
}

/// Every [`REAP_INTERVAL`] (and when woken): moves expired sandboxes to the trash, stops their
/// executions, and empties the trash — including what a crashed or killed server left there;
/// folds the metrics' histogram samples into buckets;
/// hibernates kernels idle for `WASMBOX_KERNEL_IDLE_SECONDS`.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = state.housekeeping.notified() => {}
        }
        let worker = state.clone();
        let work = tokio::task::spawn_blocking(move || {
            let reaped = worker.store.reap_expired();
            for id in &reaped {
                worker.executor.cancel_sandbox(&worker.store.fs_root(id));
                worker.kernels.remove_sandbox(id);
                worker.processes.remove_sandbox(id);
                worker.run_stats.remove(id);
            }
            (reaped.len(), worker.store.purge_trash())
        });
        match work.await {
            Ok((0, _)) => {}
            Ok((reaped, _)) => tracing::info!(reaped, "expired sandboxes deleted"),
            Err(e) => tracing::warn!(error = %e, "housekeeping task failed"),
        }
        server_metrics::upkeep();
        let hibernated = state.kernels.hibernate_idle(state.kernel_idle).await;
        if hibernated > 0 {
            tracing::info!(hibernated, "idle kernels hibernated");
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
