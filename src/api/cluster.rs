//! Cluster mode: several `wasmbox serve` nodes behind one API, no shared database.
//!
//! A sandbox id names the node that owns it (`sbx_<node>_<random>`), so any node knows where a
//! request belongs. The [`route`] middleware runs before the handlers: a request for another
//! node's sandbox is proxied to that node (bodies streamed both ways, WebSocket upgrades
//! spliced), `POST /v1/sandboxes` is placed on the least-loaded healthy node, and
//! `GET /v1/sandboxes` merges every node's page. Membership is a static `--peers` list and/or
//! a DNS name (a Kubernetes headless Service) re-resolved on every poll; each peer's
//! `/health` tells its node id and load. Requests go only to those configured peers.
//!
//! Nodes authenticate each other with the client's own credentials (every node has the same
//! account key) and, for tokens, a shared cluster secret that signs them on every node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::sandbox::node_of;

use super::error::ApiError;
use super::AppState;

/// Set on requests between nodes: "answer from your own sandboxes only" (list) or "create it
/// here" (placement). A client setting it only loses the cluster-wide view.
pub(super) const LOCAL_HEADER: &str = "x-wasmbox-cluster-local";
/// How often peers' `/health` is polled (and the DNS name re-resolved).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// A peer that does not answer its health check this fast counts as down.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting to a peer for a forwarded request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer's share of a merged list must arrive this fast.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest health or list answer read from a peer.
const PEER_BODY_LIMIT: usize = 64 << 20;

/// How a node finds its peers.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (a DNS label; the StatefulSet pod name in Kubernetes).
    pub node_id: String,
    /// Base URLs of peers (`http://10.0.0.2:8080`); this node's own URL may be among them.
    pub peers: Vec<String>,
    /// `host:port` whose addresses (re-resolved every poll) are peers, e.g. a headless
    /// Service; reached over `http`.
    pub peers_dns: Option<String>,
}

/// What is known about one peer URL.
#[derive(Clone, Debug)]
struct Peer {
    url: String,
    /// From its `/health`; `None` until it has answered once.
    node_id: Option<String>,
    healthy: bool,
    /// Load for placement: live WebAssembly instances, then sandboxes.
    live_instances: u64,
    sandboxes: u64,
}

/// Where a sandbox's requests go.
enum Owner {
    Local,
    Peer(String),
    /// Known but not answering, or named by no peer that has answered yet.
    Unavailable(String),
}

/// Membership and the proxy client.
pub(super) struct Cluster {
    node_id: String,
    static_peers: Vec<String>,
    dns: Option<String>,
    peers: Mutex<Vec<Peer>>,
    client: Client<HttpConnector, Body>,
}

impl Cluster {
    pub(super) fn new(config: &ClusterConfig) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let static_peers: Vec<String> = config
            .peers
            .iter()
            .map(|p| p.trim().trim_end_matches('/').to_string())
            .filter(|p| !p.is_empty())
            .collect();
        let peers = static_peers.iter().map(|url| Peer::new(url)).collect();
        Arc::new(Self {
            node_id: config.node_id.clone(),
            static_peers,
            dns: config.peers_dns.clone(),
            peers: Mutex::new(peers),
            client,
        })
    }

    pub(super) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The peers as `/health` reports them, for operators (and tests waiting for membership).
    pub(super) fn report(&self) -> Value {
        let peers: Vec<Value> = self
            .peers()
            .iter()
            .filter(|p| p.node_id.as_deref() != Some(self.node_id.as_str()))
            .map(
                |p| serde_json::json!({ "url": p.url, "node_id": p.node_id, "healthy": p.healthy }),
            )
            .collect();
        Value::Array(peers)
    }

    fn peers(&self) -> MutexGuard<'_, Vec<Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls every peer's health forever (spawned by the server).
    pub(super) async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.poll_once().await;
        }
    }

    /// Re-resolves the DNS name and checks every peer once.
    pub(super) async fn poll_once(&self) {
        let mut urls = self.static_peers.clone();
        if let Some(name) = &self.dns {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => urls.extend(addrs.map(|a: SocketAddr| format!("http://{a}"))),
                Err(e) => tracing::warn!(%name, error = %e, "resolving cluster peers failed"),
            }
        }
        urls.sort();
        urls.dedup();
        let checks = urls.iter().map(|url| self.check(url));
        let results = futures_util::future::join_all(checks).await;
        let mut peers = self.peers();
        for (url, result) in urls.iter().zip(results) {
            let index = match peers.iter().position(|p| &p.url == url) {
                Some(i) => i,
                None => {
                    peers.push(Peer::new(url));
                    peers.len() - 1
                }
            };
            let peer = &mut peers[index];
            match result {
                Some(health) => {
                    if !peer.healthy {
                        tracing::info!(%url, node = %health.node_id, "cluster peer up");
                    }
                    peer.node_id = Some(health.node_id.clone());
                    peer.healthy = true;
                    peer.live_instances = health.live_instances;
                    peer.sandboxes = health.sandboxes;
                }
                None => {
                    if peer.healthy {
                        tracing::warn!(%url, "cluster peer down");
                    }
                    peer.healthy = false;
                }
            }
        }
        // A node that came back at a new address (a rescheduled pod) replaces its old entry;
        // a DNS address that vanished is kept, down, so its sandboxes answer 503, not 404.
        let live: Vec<(String, String)> = peers
            .iter()
            .filter(|p| p.healthy)
            .filter_map(|p| Some((p.node_id.clone()?, p.url.clone())))
            .collect();
        peers.retain(|p| {
            p.healthy
                || self.static_peers.contains(&p.url)
                || !live
                    .iter()
                    .any(|(node, url)| p.node_id.as_ref() == Some(node) && url != &p.url)
        });
    }

    /// One health check: the peer's node id and load, or `None` when it is down.
    async fn check(&self, url: &str) -> Option<Health> {
        let uri: Uri = format!("{url}/health").parse().ok()?;
        let request = axum::http::Request::get(uri).body(Body::empty()).ok()?;
        let response = tokio::time::timeout(POLL_TIMEOUT, self.client.request(request))
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = tokio::time::timeout(
            POLL_TIMEOUT,
            to_bytes(Body::new(response.into_body()), PEER_BODY_LIMIT),
        )
        .await
        .ok()?
        .ok()?;
        let value: Value = serde_json::from_slice(&body).ok()?;
        let node_id = value.get("node_id")?.as_str()?.to_string();
        Some(Health {
            node_id,
            live_instances: value
                .get("live_instances")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            sandboxes: value.get("sandboxes").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// Who owns sandbox `id`.
    fn owner(&self, id: &str) -> Owner {
        let Some(node) = node_of(id).filter(|n| *n != self.node_id) else {
            return Owner::Local;
        };
        let peers = self.peers();
        let mut known = peers.iter().filter(|p| p.node_id.as_deref() == Some(node));
        match known.clone().find(|p| p.healthy) {
            Some(peer) => Owner::Peer(peer.url.clone()),
            None if known.next().is_some() => Owner::Unavailable(node.to_string()),
            // Named by no peer yet: while some peer has never answered it may be that one
            // (503, retry later); otherwise no node has this id and the local 404 is right.
            None if peers.iter().any(|p| p.node_id.is_none()) => {
                Owner::Unavailable(node.to_string())
            }
            None => Owner::Local,
        }
    }

    /// Marks a peer down after a failed request (until its next good health check).
    fn mark_down(&self, url: &str) {
        if let Some(peer) = self.peers().iter_mut().find(|p| p.url == url) {
            peer.healthy = false;
        }
    }

    /// Healthy peers other than this node, one URL per node id.
    fn healthy_peers(&self) -> Vec<Peer> {
        let mut seen = BTreeMap::new();
        for peer in self.peers().iter().filter(|p| p.healthy) {
            if let Some(node) = &peer.node_id {
                if node != &self.node_id {
                    seen.entry(node.clone()).or_insert_with(|| peer.clone());
                }
            }
        }
        seen.into_values().collect()
    }

    /// Node ids known but down (for the `partial` list header).
    fn down_nodes(&self) -> Vec<String> {
        let healthy: Vec<String> = self
            .healthy_peers()
            .into_iter()
            .filter_map(|p| p.node_id)
            .collect();
        let mut down: Vec<String> = self
            .peers()
            .iter()
            .filter(|p| !p.healthy)
            .filter_map(|p| p.node_id.clone())
            .filter(|n| n != &self.node_id && !healthy.contains(n))
            .collect();
        down.sort();
        down.dedup();
        down
    }

    /// Counts a sandbox just placed on peer `url`, so a burst of creates spreads before the
    /// next health poll reports the real number.
    fn note_placed(&self, url: &str) {
        if let Some(peer) = self.peers().iter_mut().find(|p| p.url == url) {
            peer.sandboxes += 1;
        }
    }

    /// Sends `request` to the peer at `base`, streaming both bodies. A WebSocket upgrade is
    /// forwarded and, once the peer agrees, the two connections are spliced.
    async fn proxy(&self, base: &str, mut request: Request) -> Result<Response, ProxyError> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let uri: Uri = format!("{base}{path}")
            .parse()
            .map_err(|_| ProxyError::BadUrl)?;
        let upgrade = is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        parts.uri = uri;
        parts.version = axum::http::Version::HTTP_11;
        strip_hop_headers(&mut parts.headers, upgrade);
        parts.headers.remove(header::HOST);
        let outgoing = Request::from_parts(parts, body);
        let mut response = self
            .client
            .request(outgoing)
            .await
            .map_err(|e| ProxyError::Unreachable(e.to_string()))?;
        if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) =
            (client_upgrade, response.status())
        {
            let peer_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(client), Ok(peer)) = (client_upgrade.await, peer_upgrade.await) {
                    let mut client = TokioIo::new(client);
                    let mut peer = TokioIo::new(peer);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut peer).await;
                }
            });
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(parts, Body::empty()));
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_headers(&mut parts.headers, false);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// [`Self::proxy`], answering 503 `NODE_UNAVAILABLE` when the peer cannot be reached.
    async fn forward(&self, base: &str, node: &str, request: Request) -> Response {
        match self.proxy(base, request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(%node, url = %base, error = %e, "forwarding to cluster peer failed");
                if matches!(e, ProxyError::Unreachable(_)) {
                    self.mark_down(base);
                }
                node_unavailable(node).into_response()
            }
        }
    }
}

impl Peer {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            node_id: None,
            healthy: false,
            live_instances: 0,
            sandboxes: 0,
        }
    }
}

struct Health {
    node_id: String,
    live_instances: u64,
    sandboxes: u64,
}

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("the peer URL is not valid")]
    BadUrl,
    #[error("peer unreachable: {0}")]
    Unreachable(String),
}

/// 503 `NODE_UNAVAILABLE`: the owner of a sandbox is down; retry later (the SDKs retry 5xx).
fn node_unavailable(node: &str) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "NODE_UNAVAILABLE",
        format!("Cluster node '{node}', which holds this sandbox, is unavailable; retry later"),
    )
    .with_detail("node_id", node.to_string())
    .with_detail("retryable", true)
    .with_detail("retry_after_seconds", 5);
    err.retry_after = Some(5);
    err
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Removes connection-scoped headers (keeping `Connection`/`Upgrade` for a WebSocket upgrade).
fn strip_hop_headers(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHORIZATION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// The sandbox a control-plane or agent path is about.
fn sandbox_of_path(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1/sandboxes/")
        .or_else(|| path.strip_prefix("/sandboxes/"))?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// The middleware: forwards, places and merges as described in the module docs; everything
/// else (and everything when not clustered) goes to the local handlers.
pub(super) async fn route(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Some(cluster) = app.cluster.clone() else {
        return next.run(request).await;
    };
    if request.headers().contains_key(LOCAL_HEADER) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    if path == "/v1/sandboxes" || path == "/v1/sandboxes/" {
        match *request.method() {
            Method::POST => return place(&cluster, &app, request, next).await,
            Method::GET => return list(&cluster, request, next).await,
            _ => return next.run(request).await,
        }
    }
    let Some(id) = sandbox_of_path(&path) else {
        return next.run(request).await;
    };
    match cluster.owner(id) {
        Owner::Local => next.run(request).await,
        Owner::Unavailable(node) => node_unavailable(&node).into_response(),
        Owner::Peer(url) => {
            let node = node_of(id).unwrap_or_default().to_string();
            cluster.forward(&url, &node, request).await
        }
    }
}

/// `POST /v1/sandboxes`: creates the sandbox on the node with the fewest live instances, then
/// the fewest sandboxes (this node on a tie); a peer that fails is skipped.
async fn place(cluster: &Cluster, app: &AppState, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, super::BODY_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "request body too large",
            )
            .into_response()
        }
    };
    let local_load = (
        u64::from(app.executor.engine().pool_use().instances),
        app.store.len() as u64,
    );
    let mut peers = cluster.healthy_peers();
    peers.sort_by_key(|p| (p.live_instances, p.sandboxes));
    for peer in peers
        .iter()
        .take_while(|p| (p.live_instances, p.sandboxes) < local_load)
    {
        let mut request = Request::from_parts(parts.clone(), Body::from(body.clone()));
        request
            .headers_mut()
            .insert(LOCAL_HEADER, HeaderValue::from_static("1"));
        match cluster.proxy(&peer.url, request).await {
            Ok(response) => {
                if response.status().is_success() {
                    cluster.note_placed(&peer.url);
                }
                return response;
            }
            Err(e) => {
                tracing::warn!(url = %peer.url, error = %e, "placing on cluster peer failed; trying the next node");
                cluster.mark_down(&peer.url);
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// `GET /v1/sandboxes`: this node's page (which also checks the credentials) merged with every
/// healthy peer's page for the same query, in the global (created_at, id) order the cursor
/// encodes. Down nodes are named in `X-Wasmbox-Cluster-Partial`.
async fn list(cluster: &Cluster, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    parts
        .headers
        .insert(LOCAL_HEADER, HeaderValue::from_static("1"));
    let query = parts.uri.query().map(str::to_string);
    let limit = query
        .as_deref()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "limit")
                .and_then(|(_, v)| v.parse::<usize>().ok())
        })
        .unwrap_or(super::control::DEFAULT_PAGE)
        .clamp(1, super::control::MAX_PAGE);
    let local = next
        .run(Request::from_parts(parts.clone(), Body::empty()))
        .await;
    drop(body);
    if !local.status().is_success() {
        return local;
    }
    let mut pages = vec![];
    match read_page(local).await {
        Some(page) => pages.push(page),
        None => return ApiError::internal("reading the local list failed").into_response(),
    }
    let peers = cluster.healthy_peers();
    let fetches = peers.iter().map(|peer| {
        let request = Request::from_parts(parts.clone(), Body::empty());
        async move {
            let response =
                tokio::time::timeout(LIST_TIMEOUT, cluster.proxy(&peer.url, request)).await;
            match response {
                Ok(Ok(r)) if r.status().is_success() => read_page(r).await,
                _ => None,
            }
        }
    });
    let mut partial = cluster.down_nodes();
    for (peer, page) in peers
        .iter()
        .zip(futures_util::future::join_all(fetches).await)
    {
        match page {
            Some(page) => pages.push(page),
            None => partial.extend(peer.node_id.clone()),
        }
    }
    let mut items: Vec<(super::control::CursorKey, Value)> = vec![];
    let mut has_more = false;
    for page in pages {
        has_more |= page.get("has_more").and_then(Value::as_bool) == Some(true);
        let data = match page.get("data") {
            Some(Value::Array(data)) => data.clone(),
            _ => vec![],
        };
        for mut item in data {
            let key = item
                .as_object_mut()
                .and_then(|o| o.remove("cursor"))
                .and_then(|c| c.as_str().map(str::to_string))
                .and_then(|c| super::control::decode_cursor(&c).ok());
            if let Some(key) = key {
                items.push((key, item));
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    has_more |= items.len() > limit;
    items.truncate(limit);
    let next_cursor = items
        .last()
        .filter(|_| has_more)
        .map(|((at, id), _)| super::control::cursor_of(*at, id));
    let body = serde_json::json!({
        "object": "list",
        "data": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "has_more": has_more,
        "next_cursor": next_cursor,
    });
    let mut response = axum::Json(body).into_response();
    if !partial.is_empty() {
        partial.sort();
        partial.dedup();
        if let Ok(value) = HeaderValue::from_str(&partial.join(",")) {
            response
                .headers_mut()
                .insert("x-wasmbox-cluster-partial", value);
        }
    }
    response
}

async fn read_page(response: Response) -> Option<Value> {
    let bytes = to_bytes(response.into_body(), PEER_BODY_LIMIT).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The opaque cursor text for tests of the merge order.
#[cfg(test)]
fn encoded(at: &str, id: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at}|{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_sandbox() {
        assert_eq!(sandbox_of_path("/v1/sandboxes/sbx_a_1"), Some("sbx_a_1"));
        assert_eq!(
            sandbox_of_path("/v1/sandboxes/sbx_a_1/token/refresh"),
            Some("sbx_a_1")
        );
        assert_eq!(
            sandbox_of_path("/sandboxes/sbx_a_1/files/read"),
            Some("sbx_a_1")
        );
        assert_eq!(sandbox_of_path("/v1/sandboxes"), None);
        assert_eq!(sandbox_of_path("/v1/templates/x"), None);
    }

    #[test]
    fn owner_follows_the_id() {
        let cluster = Cluster::new(&ClusterConfig {
            node_id: "a".into(),
            peers: vec!["http://127.0.0.1:1".into()],
            peers_dns: None,
        });
        assert!(matches!(cluster.owner("sbx_a_x"), Owner::Local));
        assert!(matches!(cluster.owner("sbx_plainid"), Owner::Local));
        // The only peer never answered: it may be node b.
        assert!(matches!(cluster.owner("sbx_b_x"), Owner::Unavailable(n) if n == "b"));
        {
            let mut peers = cluster.peers();
            peers[0].node_id = Some("b".into());
            peers[0].healthy = true;
        }
        assert!(matches!(cluster.owner("sbx_b_x"), Owner::Peer(u) if u == "http://127.0.0.1:1"));
        // Every peer is known and none is c: no such node, the local 404 answers.
        assert!(matches!(cluster.owner("sbx_c_x"), Owner::Local));
        cluster.mark_down("http://127.0.0.1:1");
        assert!(matches!(cluster.owner("sbx_b_x"), Owner::Unavailable(n) if n == "b"));
        assert_eq!(cluster.down_nodes(), vec!["b".to_string()]);
        let cursor = encoded("2026-01-01T00:00:00.000000001Z", "sbx_b_x");
        assert!(super::super::control::decode_cursor(&cursor).is_ok());
    }
}
