//! `wasmbox serve`: the HopX-compatible HTTP service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use wasmbox::api::listener::{
    TlsFiles, DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
};
use wasmbox::api::{
    shutdown_signal, ClusterConfig, ClusterSetup, ConnectionLimits, KeySource, Server, ServerConfig,
};
use wasmbox::config::Settings;

use super::CliError;

/// Serve the control plane (/v1/…) and every sandbox's agent API (/sandboxes/{id}/…).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Where sandboxes and server secrets live (default: WASMBOX_DATA_DIR or the XDG data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,

    /// Account API key clients must send. Without it, a key is generated once and kept in
    /// <data-dir>/server/api_key.
    #[arg(long, env = "WASMBOX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// Base URL clients use to reach this server, for sandboxes' `public_host`
    /// (default: http://<listen address>).
    #[arg(long)]
    public_url: Option<String>,

    /// Seconds an execution waits for a free instance before the request gets 429.
    #[arg(long, default_value_t = 10.0)]
    queue_wait: f64,

    /// Seconds a client has to send a complete request head (from its first byte, or from
    /// connecting for a connection's first request) before the connection is closed.
    #[arg(long, default_value_t = DEFAULT_HEADER_TIMEOUT.as_secs_f64())]
    header_timeout: f64,

    /// Seconds a connection may stay open without a request after its last response.
    #[arg(long, default_value_t = DEFAULT_IDLE_TIMEOUT.as_secs_f64())]
    idle_timeout: f64,

    /// Most connections open at once (lowered to fit the open-file limit). At the cap, the
    /// connection idle the longest is closed to make room.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,

    /// Give each sandbox its own host, `{id}.DOMAIN` (`public_host`), and route requests for
    /// `{id}.DOMAIN` and `{port}-{id}.DOMAIN` to that sandbox's agent API at the origin root.
    /// Needs wildcard DNS (and a wildcard certificate with TLS) for DOMAIN.
    #[arg(long, value_name = "DOMAIN")]
    sandbox_domain: Option<String>,

    /// A host (name or IP address) `/execute/async` may deliver results to; repeat for more.
    /// Loopback is always allowed, nothing else unless listed (also WASMBOX_CALLBACK_HOSTS).
    #[arg(long = "allow-callback-host", value_name = "HOST")]
    allow_callback_hosts: Vec<String>,

    /// The package index `pip install` in a sandbox uses (the root of a "simple" repository
    /// that answers in JSON); installation is disabled without one (also WASMBOX_PACKAGE_INDEX).
    #[arg(long, value_name = "URL")]
    package_index: Option<String>,

    /// Run as node ID of a cluster (lowercase letters, digits and '-'; in Kubernetes the pod
    /// name). Sandbox ids then name their node, and requests reaching the wrong node are
    /// forwarded to the owner. Every node needs the same --api-key.
    #[arg(long, env = "WASMBOX_NODE_ID", value_name = "ID")]
    node_id: Option<String>,

    /// Base URLs of the other nodes, comma-separated (this node's own URL may be listed too).
    #[arg(
        long,
        env = "WASMBOX_PEERS",
        value_delimiter = ',',
        value_name = "URL,…",
        requires = "node_id"
    )]
    peers: Vec<String>,

    /// HOST:PORT whose DNS addresses are the nodes (a Kubernetes headless Service),
    /// re-resolved every second.
    #[arg(
        long,
        env = "WASMBOX_PEERS_DNS",
        value_name = "HOST:PORT",
        requires = "node_id"
    )]
    peers_dns: Option<String>,

    /// A secret shared by every node that signs sandbox tokens, so a token minted by any node
    /// is accepted by all (default: each node's own secret in <data-dir>/server).
    #[arg(
        long,
        env = "WASMBOX_CLUSTER_SECRET",
        hide_env_values = true,
        requires = "node_id"
    )]
    cluster_secret: Option<String>,
}

impl ServeArgs {
    pub fn execute(self, settings: &Settings) -> Result<ExitCode, CliError> {
        let mut settings = settings.clone();
        if let Some(dir) = self.data_dir {
            settings.data_dir = dir;
        }
        if let Some(index) = self.package_index {
            settings.package_index = Some(index);
        }
        settings.callback_hosts.extend(
            self.allow_callback_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase()),
        );
        if !self.queue_wait.is_finite() || self.queue_wait < 0.0 {
            return Err(CliError::Usage(
                "--queue-wait must be a non-negative number of seconds".into(),
            ));
        }
        let connections = ConnectionLimits {
            header_timeout: positive_seconds("--header-timeout", self.header_timeout)?,
            idle_timeout: positive_seconds("--idle-timeout", self.idle_timeout)?,
            max_connections: self.max_connections,
        };
        if connections.max_connections == 0 {
            return Err(CliError::Usage(
                "--max-connections must be at least 1".into(),
            ));
        }
        if let Some(domain) = &self.sandbox_domain {
            let valid = !domain.is_empty()
                && domain.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(CliError::Usage(format!(
                    "--sandbox-domain must be a DNS name such as sandboxes.example.com, got '{domain}'"
                )));
            }
        }
        if let Some(url) = &self.public_url {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(CliError::Usage(format!(
                    "--public-url must start with http:// or https://, got '{url}'"
                )));
            }
        }
        let cluster = match self.node_id {
            None => None,
            Some(node_id) => {
                if !wasmbox::sandbox::is_node_id(&node_id) {
                    return Err(CliError::Usage(format!(
                        "--node-id must be 1-40 lowercase letters, digits and '-', got '{node_id}'"
                    )));
                }
                let peers: Vec<String> = self
                    .peers
                    .iter()
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
                if let Some(bad) = peers.iter().find(|p| !p.starts_with("http://")) {
                    return Err(CliError::Usage(format!(
                        "--peers takes http:// URLs of the other nodes, got '{bad}'"
                    )));
                }
                Some(ClusterSetup {
                    config: ClusterConfig {
                        node_id,
                        peers,
                        peers_dns: self.peers_dns,
                    },
                    secret: self.cluster_secret,
                })
            }
        };
        let config = ServerConfig {
            settings,
            listen: self.listen,
            api_key: self.api_key,
            public_url: self.public_url,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            sandbox_domain: self.sandbox_domain,
            queue_wait: Duration::from_secs_f64(self.queue_wait),
            connections,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Other(format!("cannot start async runtime: {e}")))?;
        runtime.block_on(async {
            let server = Server::bind_cluster(config, cluster)
                .await
                .map_err(|e| CliError::Other(wasmbox::describe_error(&e)))?;
            match server.key_source() {
                KeySource::Configured => {}
                KeySource::Generated(path) => {
                    eprintln!("wasmbox: generated an API key; it is in {}", path.display())
                }
                KeySource::Stored(path) => eprintln!("wasmbox: API key: see {}", path.display()),
            }
            eprintln!(
                "wasmbox: listening on {}://{}",
                server.scheme(),
                server.local_addr()
            );
            server
                .run(shutdown_signal())
                .await
                .map_err(|e| CliError::Other(wasmbox::describe_error(&e)))?;
            eprintln!("wasmbox: stopped");
            Ok(ExitCode::SUCCESS)
        })
    }
}

/// A duration flag: a positive number of seconds (at most a day, which also keeps it
/// representable).
fn positive_seconds(flag: &str, seconds: f64) -> Result<Duration, CliError> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(CliError::Usage(format!(
            "{flag} must be a number of seconds above 0 and at most 86400"
        )))
    }
}
