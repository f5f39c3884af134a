//! Where clients reach a sandbox's agent API (its `public_host`): `{public_url}/sandboxes/{id}`
//! by default; with `serve --sandbox-domain D`, a host of its own, `{scheme}://{id}.D[:port]`,
//! as HopX gives each sandbox. Requests whose `Host` is `{id}.D` or `{port}-{id}.D` are routed to
//! that sandbox's agent routes, so its API, WebSockets and files sit at the origin root of a
//! host nobody else shares (one browser origin per sandbox).

use axum::extract::Request;
use axum::http::header;
use axum::http::uri::{PathAndQuery, Uri};

/// Builds sandboxes' public hosts and recognises them in requests.
#[derive(Clone, Debug)]
pub(super) struct PublicHosts {
    /// The server's own base URL, no trailing slash.
    base: String,
    /// With a sandbox domain: the scheme, the domain (lower case) and the port part (`:8443`
    /// or empty) of sandbox hosts.
    domain: Option<SandboxDomain>,
}

#[derive(Clone, Debug)]
struct SandboxDomain {
    scheme: String,
    name: String,
    port: String,
}

impl PublicHosts {
    /// Hosts under `base` (e.g. `https://wasmbox.example.com:8443`), or `{id}.{domain}` with
    /// `base`'s scheme and port when a domain is given.
    pub(super) fn new(base: &str, domain: Option<&str>) -> Self {
        let base = base.trim_end_matches('/').to_string();
        let domain = domain.map(|name| {
            let parsed = url::Url::parse(&base).ok();
            SandboxDomain {
                scheme: parsed.as_ref().map_or("http", |u| u.scheme()).to_string(),
                name: name.trim_matches('.').to_ascii_lowercase(),
                port: parsed
                    .and_then(|u| u.port())
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default(),
            }
        });
        Self { base, domain }
    }

    /// The `public_host` of sandbox `id`.
    pub(super) fn of(&self, id: &str) -> String {
        match &self.domain {
            Some(d) => format!("{}://{id}.{}{}", d.scheme, d.name, d.port),
            None => format!("{}/sandboxes/{id}", self.base),
        }
    }

    /// The sandbox a `Host` header names: `{id}.D` or `{port}-{id}.D` (port ignored: a
    /// sandbox has no network, so only its agent answers).
    fn sandbox_of_host<'h>(&self, host: &'h str) -> Option<&'h str> {
        let domain = self.domain.as_ref()?;
        let name = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        let label = name
            .strip_suffix(domain.name.as_str())
            .filter(|_| name.len() > domain.name.len())
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|label| !label.is_empty() && !label.contains('.'))?;
        let label = match label.split_once('-') {
            Some((port, id)) if port.bytes().all(|b| b.is_ascii_digit()) => id,
            _ => label,
        };
        Some(label)
    }

    /// Sends a request for a sandbox host to that sandbox's agent routes
    /// (`/execute` → `/sandboxes/{id}/execute`); other requests pass unchanged.
    pub(super) fn route(&self, mut request: Request) -> Request {
        // Without a sandbox domain no request is rewritten: skip reading the Host on every call.
        if self.domain.is_none() {
            return request;
        }
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase)
            .or_else(|| request.uri().host().map(str::to_ascii_lowercase));
        let Some(id) = host.as_deref().and_then(|h| self.sandbox_of_host(h)) else {
            return request;
        };
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", PathAndQuery::as_str);
        let rewritten = format!("/sandboxes/{id}{path_and_query}");
        let mut parts = request.uri().clone().into_parts();
        match PathAndQuery::try_from(rewritten) {
            Ok(path) => parts.path_and_query = Some(path),
            Err(_) => return request,
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_hosts_with_and_without_a_domain() {
        let plain = PublicHosts::new("http://127.0.0.1:8080/", None);
        assert_eq!(plain.of("sbx_1"), "http://127.0.0.1:8080/sandboxes/sbx_1");
        assert_eq!(plain.sandbox_of_host("sbx_1.example.com"), None);

        let hosts = PublicHosts::new("https://api.example.com:8443", Some("Sbx.Example.com"));
        assert_eq!(hosts.of("sbx_1"), "https://sbx_1.sbx.example.com:8443");
        assert_eq!(
            hosts.sandbox_of_host("sbx_1.sbx.example.com"),
            Some("sbx_1")
        );
        assert_eq!(
            hosts.sandbox_of_host("sbx_1.sbx.example.com:8443"),
            Some("sbx_1")
        );
        assert_eq!(
            hosts.sandbox_of_host("7777-sbx_1.sbx.example.com"),
            Some("sbx_1")
        );
        assert_eq!(hosts.sandbox_of_host("sbx.example.com"), None);
        assert_eq!(hosts.sandbox_of_host("a.b.sbx.example.com"), None);
        assert_eq!(hosts.sandbox_of_host("sbx_1.evilsbx.example.com"), None);
        assert_eq!(hosts.sandbox_of_host("api.example.com"), None);
    }

    #[test]
    fn requests_for_a_sandbox_host_go_to_its_agent_routes() {
        let hosts = PublicHosts::new("http://127.0.0.1:8080", Some("sbx.test"));
        let request = Request::builder()
            .uri("/files/read?path=/workspace/a")
            .header(header::HOST, "sbx_9.sbx.test:8080")
            .body(axum::body::Body::empty())
            .unwrap();
        let routed = hosts.route(request);
        assert_eq!(
            routed.uri().path_and_query().unwrap().as_str(),
            "/sandboxes/sbx_9/files/read?path=/workspace/a"
        );
        let request = Request::builder()
            .uri("/v1/sandboxes")
            .header(header::HOST, "127.0.0.1:8080")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(hosts.route(request).uri().path(), "/v1/sandboxes");
    }
}
