//! The accept loop in front of the router. `axum::serve` has no header or idle timeout and no
//! connection cap, so a client holding many silent or half-sent connections made the server
//! unreachable before any request was even authenticated. Here:
//!
//! * **Connection cap.** At most `max_connections` connections are open (never more than the
//!   descriptor limit minus [`FD_RESERVE`]). A connection accepted at the cap takes the slot of
//!   the connection that has waited longest without a request in flight, which is closed; only
//!   when every connection is busy does it wait for a slot (up to the header timeout, while
//!   later ones queue in the kernel's backlog), and it is closed if none frees up. Connections
//!   that are not serving a request therefore cannot keep anyone out, however many are opened.
//! * **Header timeout.** A request head must be complete within `header_timeout` of its first
//!   byte, and a new connection must send its first request within `header_timeout`.
//! * **Idle timeout.** A connection with no request for `idle_timeout` after its last response
//!   is closed.
//!
//! hyper's own `header_read_timeout` is not used: its timer starts whenever hyper begins waiting
//! for a request head (`proto/h1/conn.rs`, `poll_read_head`), so it is the keep-alive idle timer
//! as well, and it does not run while hyper-util reads the protocol preface, where a connection
//! that sends nothing would wait forever. One watchdog per connection applies both timeouts
//! from what it observes: bytes arriving (an IO wrapper) and requests starting and finishing (a
//! service wrapper whose guard lives until the response body has been sent).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Default `--header-timeout`: generous for any real client, short enough that a slot held by a
/// silent connection comes back quickly.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--idle-timeout`: longer than the pause between an SDK's calls, so keep-alive
/// connections are reused instead of racing the server's close.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Descriptors kept out of the connection cap for everything else the server opens: the
/// listener, the async runtime, module files, sandbox directories and the files guests open.
pub const FD_RESERVE: u64 = 256;
/// How often a connection waiting for a slot retries evicting an idle one.
const EVICTION_RETRY: Duration = Duration::from_millis(50);
/// Connections the kernel queues until they are accepted. std and mio use 128, and a burst past
/// that (1,100 connections opened at once) has the kernel drop SYNs, so clients, including
/// legitimate ones, wait a second for the retry; Linux caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 1024;
/// Back-off after an accept error such as EMFILE: doubling from the first to the last value.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_LAST: Duration = Duration::from_secs(1);

/// Limits on the connections the server accepts.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time to send a complete request head, from its first byte (and, on a new connection,
    /// from the accept).
    pub header_timeout: Duration,
    /// Time a connection may wait for its next request after a response.
    pub idle_timeout: Duration,
    /// Most connections open at once (lowered to fit the descriptor limit).
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (once; later calls return the
/// same value) and returns the resulting soft limit: every connection and every file a guest
/// opens is a descriptor, and the common soft default (1024) is far below what a server needs.
pub fn raise_fd_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(raise_soft_nofile)
}

#[cfg(unix)]
fn raise_soft_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit (RLIMIT_NOFILE)");
        }
    }
    // `None` is RLIM_INFINITY.
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Other systems have no per-process descriptor limit to raise.
#[cfg(not(unix))]
fn raise_soft_nofile() -> u64 {
    u64::MAX
}

/// The certificate chain and private key (PEM files) `serve --tls-cert/--tls-key` names.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing, unreadable or not PEM.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading or decoding it found.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{} holds no certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key does not fit the certificate, or either is unusable.
    #[error("unusable certificate or key: {0}")]
    Config(#[from] rustls::Error),
}

/// An HTTPS acceptor for `files` (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`).
pub(super) fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    fn read(path: &std::path::Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
        move |source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(read(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read(&files.cert))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(read(&files.key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds `addr` for listening with a [`LISTEN_BACKLOG`]-deep accept queue.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and mio do: a restarted server can bind while old connections are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The connection cap for `requested` under descriptor limit `fd_limit`.
fn connection_cap(requested: usize, fd_limit: u64) -> usize {
    let available = usize::try_from(fd_limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX);
    requested.min(available).max(1)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish for
/// up to `grace` (connections still open after that are dropped with the runtime).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let fd_limit = raise_fd_limit();
    let max_connections = connection_cap(limits.max_connections, fd_limit);
    if max_connections < limits.max_connections {
        tracing::warn!(
            requested = limits.max_connections,
            max_connections,
            fd_limit,
            "connection cap lowered to fit the open-file limit (RLIMIT_NOFILE)"
        );
    }
    tracing::info!(
        max_connections,
        fd_limit,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        "accepting connections"
    );
    let slots = Arc::new(Semaphore::new(max_connections));
    let registry = Arc::new(Registry::default());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The watchdog times heads and idle waits (see the module docs).
    builder.http1().header_read_timeout(None);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut backoff = AcceptBackoff::default();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                backoff.after(e).await;
                continue;
            }
        };
        let admitted = tokio::select! {
            () = &mut shutdown => break,
            admitted = admit(&slots, &registry, limits.header_timeout) => admitted,
        };
        let Some(slot) = admitted else {
            tracing::warn!(%peer, max_connections, "connection refused: every connection is busy");
            continue;
        };
        let connection = Connection {
            stream,
            peer,
            slot,
            tracked: registry.register(),
            router: router.clone(),
            tls: tls.clone(),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            limits,
        };
        tokio::spawn(connection.serve());
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("requests still running after the shutdown grace period; cancelling them");
        }
    }
}

/// A slot for a connection just accepted: a free one, or one freed by evicting the connection
/// that has waited longest without a request; `None` if none frees up within `wait`. Waiting
/// (rather than closing at once) serves the newcomer as soon as a request finishes, and a
/// request already sent on a connection closed unread would be answered with a reset.
async fn admit(
    slots: &Arc<Semaphore>,
    registry: &Registry,
    wait: Duration,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(slot) = slots.clone().try_acquire_owned() {
        return Some(slot);
    }
    let give_up = Instant::now() + wait;
    loop {
        registry.evict_longest_waiting();
        let retry = (Instant::now() + EVICTION_RETRY).min(give_up);
        if let Ok(slot) = tokio::time::timeout_at(retry, slots.clone().acquire_owned()).await {
            // The semaphore is never closed.
            return slot.ok();
        }
        if Instant::now() >= give_up {
            return None;
        }
    }
}

/// Accept errors: one a peer caused is skipped; anything else (EMFILE, ENFILE, ENOBUFS…) waits,
/// doubling the pause, so the loop neither spins nor ends while descriptors are short.
struct AcceptBackoff {
    pause: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            pause: ACCEPT_BACKOFF_FIRST,
        }
    }
}

impl AcceptBackoff {
    async fn after(&mut self, error: io::Error) {
        use io::ErrorKind as K;
        if matches!(
            error.kind(),
            K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
        ) {
            return;
        }
        tracing::error!(%error, retry_in = ?self.pause, "accepting a connection failed");
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(ACCEPT_BACKOFF_LAST);
    }

    fn reset(&mut self) {
        self.pause = ACCEPT_BACKOFF_FIRST;
    }
}

/// An accepted connection with everything its task needs.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
    tracked: Registered,
    router: Router,
    /// Set when the server speaks HTTPS: the handshake comes first.
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    limits: ConnectionLimits,
}

impl Connection {
    /// Serves HTTP on the connection until the client closes it, it errs, or the watchdog
    /// closes it; then frees its slot.
    async fn serve(self) {
        let Connection {
            stream,
            peer,
            slot: _slot,
            tracked,
            router,
            tls,
            builder,
            watcher,
            limits,
        } = self;
        // Responses are written whole; waiting for more to send only adds latency.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let state = tracked.state.clone();
        let io = TrackedIo {
            stream,
            state: state.clone(),
        };
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let guard = RequestGuard::start(state.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| TrackedBody {
                    body,
                    _request: guard,
                }))
            }
        });
        // The handshake runs under the watchdog too: it must end within the header timeout.
        let http = async {
            match tls {
                Some(acceptor) => {
                    let stream = acceptor.accept(io).await?;
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
                None => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(io), service);
                    watcher.watch(connection).await
                }
            }
        };
        tokio::select! {
            result = http => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            reason = watchdog(&tracked.state, &limits) => {
                tracing::debug!(%peer, reason = reason.describe(), "connection closed by the server");
            }
        }
    }
}

/// Why the server closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    Evicted,
}

impl CloseReason {
    fn describe(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "no complete request head within the header timeout",
            CloseReason::IdleTimeout => "no request within the idle timeout",
            CloseReason::Evicted => "idle; its slot went to a new connection",
        }
    }
}

/// Resolves when the connection must be closed; never while a request is in flight.
async fn watchdog(state: &ConnectionState, limits: &ConnectionLimits) -> CloseReason {
    loop {
        let phase = *state.phase();
        if phase.requests == 0 && phase.evicted {
            return CloseReason::Evicted;
        }
        match phase.deadline(limits) {
            None => state.changed.notified().await,
            Some((at, reason)) if at <= Instant::now() => return reason,
            Some((at, _)) => {
                tokio::select! {
                    () = state.changed.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                }
            }
        }
    }
}

/// What the watchdog and the eviction know about one connection.
struct ConnectionState {
    phase: Mutex<Phase>,
    /// Signalled when a request finishes, a head starts or the connection is evicted (one
    /// waiter, the watchdog; `notify_one` keeps a signal that arrives while it is busy).
    changed: Notify,
}

#[derive(Clone, Copy, Debug)]
struct Phase {
    /// Requests whose responses have not been completely sent.
    requests: usize,
    /// Since when no request has been in flight (the accept, or the last response).
    waiting_since: Instant,
    /// When the first byte of the next request arrived.
    head_started: Option<Instant>,
    /// Whether a response has been sent (then the wait is idle, not the first request).
    answered: bool,
    /// Asked to close so a new connection can have its slot.
    evicted: bool,
}

impl Phase {
    /// When a waiting connection is closed, and why; `None` while a request is in flight.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, CloseReason)> {
        if self.requests > 0 {
            return None;
        }
        Some(match self.head_started {
            Some(at) => (at + limits.header_timeout, CloseReason::HeaderTimeout),
            None if self.answered => (
                self.waiting_since + limits.idle_timeout,
                CloseReason::IdleTimeout,
            ),
            None => (
                self.waiting_since + limits.header_timeout,
                CloseReason::HeaderTimeout,
            ),
        })
    }
}

impl ConnectionState {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase {
                requests: 0,
                waiting_since: Instant::now(),
                head_started: None,
                answered: false,
                evicted: false,
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: while waiting, they start the next request's head.
    fn bytes_received(&self) {
        let mut phase = self.phase();
        if phase.requests == 0 && phase.head_started.is_none() {
            phase.head_started = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        let mut phase = self.phase();
        phase.requests += 1;
        phase.head_started = None;
        phase.evicted = false;
    }

    fn request_finished(&self) {
        let mut phase = self.phase();
        phase.requests = phase.requests.saturating_sub(1);
        if phase.requests == 0 {
            phase.waiting_since = Instant::now();
            phase.head_started = None;
            phase.answered = true;
        }
        drop(phase);
        self.changed.notify_one();
    }

    /// Asks the connection to close if no request is in flight; whether it will.
    fn evict(&self) -> bool {
        let mut phase = self.phase();
        if phase.requests > 0 || phase.evicted {
            return false;
        }
        phase.evicted = true;
        drop(phase);
        self.changed.notify_one();
        true
    }
}

/// The open connections, so one can be evicted when the cap is reached.
#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
}

impl Registry {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState::new());
        self.open().insert(id, state.clone());
        Registered {
            registry: self.clone(),
            id,
            state,
        }
    }

    /// Evicts the connection that has waited longest with no request in flight; false when
    /// every connection is busy.
    fn evict_longest_waiting(&self) -> bool {
        let open = self.open();
        let longest = open
            .values()
            .filter_map(|state| {
                let phase = *state.phase();
                (phase.requests == 0 && !phase.evicted).then_some((phase.waiting_since, state))
            })
            .min_by_key(|(since, _)| *since);
        longest.is_some_and(|(_, state)| state.evict())
    }
}

/// A connection's entry in the [`Registry`], removed when the connection's task ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
    state: Arc<ConnectionState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.open().remove(&self.id);
    }
}

/// The TCP stream, reporting to the watchdog when bytes arrive.
struct TrackedIo {
    stream: TcpStream,
    state: Arc<ConnectionState>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.bytes_received();
        }
        polled
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request in flight, from the call of the service until its response body is dropped (hyper
/// drops it once it is sent, or when the connection goes away).
struct RequestGuard(Arc<ConnectionState>);

impl RequestGuard {
    fn start(state: Arc<ConnectionState>) -> Self {
        state.request_started();
        Self(state)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct TrackedBody {
    body: Body,
    _request: RequestGuard,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_timeout: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(500),
        max_connections: 4,
    };

    #[test]
    fn cap_leaves_the_reserve() {
        assert_eq!(connection_cap(1024, 20_000), 1024);
        assert_eq!(connection_cap(1024, 1024), 1024 - 256);
        assert_eq!(connection_cap(1024, 100), 1);
        assert_eq!(connection_cap(1024, u64::MAX), 1024);
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let state = ConnectionState::new();
        let deadline = || state.phase().deadline(&LIMITS);
        let accepted = state.phase().waiting_since;
        assert_eq!(
            deadline(),
            Some((accepted + LIMITS.header_timeout, CloseReason::HeaderTimeout)),
            "a new connection has the header timeout for its first request"
        );
        state.bytes_received();
        state.request_started();
        assert_eq!(deadline(), None, "no deadline while a request is in flight");
        state.bytes_received();
        assert_eq!(deadline(), None, "body bytes start no head");
        state.request_finished();
        let answered = state.phase().waiting_since;
        assert!(answered > accepted);
        assert_eq!(
            deadline(),
            Some((answered + LIMITS.idle_timeout, CloseReason::IdleTimeout))
        );
        state.bytes_received();
        let head = state.phase().head_started.expect("head started");
        assert_eq!(
            deadline(),
            Some((head + LIMITS.header_timeout, CloseReason::HeaderTimeout))
        );
    }

    #[tokio::test]
    async fn watchdog_closes_a_silent_connection_after_the_header_timeout() {
        let state = ConnectionState::new();
        let started = Instant::now();
        assert_eq!(watchdog(&state, &LIMITS).await, CloseReason::HeaderTimeout);
        assert!(started.elapsed() >= LIMITS.header_timeout);
    }

    #[tokio::test]
    async fn watchdog_waits_for_a_running_request_then_times_the_idle_wait() {
        let state = Arc::new(ConnectionState::new());
        state.request_started();
        let finisher = {
            let state = state.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LIMITS.header_timeout * 4).await;
                let finished = Instant::now();
                state.request_finished();
                finished
            })
        };
        assert_eq!(watchdog(&state, &LIMITS).await, CloseReason::IdleTimeout);
        let finished = finisher.await.expect("finisher");
        assert!(finished.elapsed() >= LIMITS.idle_timeout);
    }

    #[tokio::test]
    async fn an_evicted_idle_connection_closes_at_once() {
        let state = ConnectionState::new();
        assert!(state.evict());
        let started = Instant::now();
        assert_eq!(watchdog(&state, &LIMITS).await, CloseReason::Evicted);
        assert!(started.elapsed() < LIMITS.header_timeout);
    }

    #[test]
    fn eviction_picks_the_longest_waiting_idle_connection() {
        let registry = Arc::new(Registry::default());
        let busy = registry.register();
        busy.state.request_started();
        let older = registry.register();
        std::thread::sleep(Duration::from_millis(2));
        let newer = registry.register();
        assert!(registry.evict_longest_waiting());
        assert!(older.state.phase().evicted);
        assert!(!newer.state.phase().evicted && !busy.state.phase().evicted);
        assert!(registry.evict_longest_waiting());
        assert!(newer.state.phase().evicted);
        assert!(
            !registry.evict_longest_waiting(),
            "a connection with a request in flight is never evicted"
        );
        drop(older);
        assert_eq!(registry.open().len(), 2);
    }
}
