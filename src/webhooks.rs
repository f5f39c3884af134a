//! Callbacks of `/execute/async`: when a run ends, its result is POSTed to the URL the caller
//! gave — only to hosts the operator allows (loopback, plus `--allow-callback-host` /
//! `WASMBOX_CALLBACK_HOSTS`), so a tenant cannot make the server probe internal networks.
//!
//! Each delivery carries the caller's headers, `X-HOPX-Timestamp` (Unix seconds) and, with a
//! secret, `X-HOPX-Signature: sha256=<hex HMAC-SHA256 of the body>`; it is retried with backoff
//! on failure (no redirects are followed).

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Url;
use sha2::Sha256;

/// Attempts per delivery, and the pause before each retry.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(8),
];
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a callback URL was refused or a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Not an absolute http(s) URL.
    #[error("callback_url must be an absolute http:// or https:// URL: {0}")]
    BadUrl(String),
    /// The host is not on the operator's list.
    #[error("callback host '{0}' is not allowed (the server's operator allows loopback{1})")]
    HostNotAllowed(String, String),
    /// A header name or value cannot be sent.
    #[error("callback header '{0}' is not a valid HTTP header")]
    BadHeader(String),
    /// Every attempt failed.
    #[error("delivering the callback failed after {attempts} attempts")]
    Undelivered {
        /// Attempts made.
        attempts: usize,
        /// The last attempt's failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Which hosts callbacks may go to.
#[derive(Clone, Debug, Default)]
pub struct CallbackPolicy {
    /// Allowed host names and addresses besides loopback (lowercase).
    allowed: Vec<String>,
}

impl CallbackPolicy {
    /// Loopback plus `hosts` (names or IP addresses).
    pub fn new(hosts: &[String]) -> Self {
        Self {
            allowed: hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// The URL, if it is absolute http(s) to an allowed host.
    pub fn check(&self, url: &str) -> Result<Url, WebhookError> {
        let parsed = Url::parse(url).map_err(|_| WebhookError::BadUrl(url.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::BadUrl(url.to_string()));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(WebhookError::BadUrl(url.to_string())),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback || self.allowed.contains(&host) {
            Ok(parsed)
        } else {
            let others = if self.allowed.is_empty() {
                String::from(" only")
            } else {
                format!(" and {}", self.allowed.join(", "))
            };
            Err(WebhookError::HostNotAllowed(host, others))
        }
    }
}

/// Where and how one run's result is delivered.
#[derive(Clone, Debug)]
pub struct Callback {
    /// Checked by [`CallbackPolicy::check`].
    pub url: Url,
    /// The caller's extra headers.
    pub headers: BTreeMap<String, String>,
    /// Signs the body when given.
    pub secret: Option<String>,
}

impl Callback {
    /// Checks the headers can be sent.
    pub fn validate(&self) -> Result<(), WebhookError> {
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(WebhookError::BadHeader(name.clone()));
            }
        }
        Ok(())
    }

    /// POSTs `body` (JSON), retrying with backoff; -> the attempts made.
    pub async fn deliver(&self, body: Vec<u8>) -> Result<usize, WebhookError> {
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| WebhookError::Undelivered {
                attempts: 0,
                source: e.into(),
            })?;
        let mut last: Box<dyn std::error::Error + Send + Sync> = "not attempted".into();
        for attempt in 0..=BACKOFF.len() {
            if attempt > 0 {
                tokio::time::sleep(BACKOFF[attempt - 1]).await;
            }
            let timestamp = chrono::Utc::now().timestamp().to_string();
            let mut request = client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-HOPX-Timestamp", &timestamp)
                .body(body.clone());
            for (name, value) in &self.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            if let Some(secret) = &self.secret {
                request = request.header("X-HOPX-Signature", signature(secret, &body));
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(attempt + 1),
                Ok(response) => {
                    last = format!("the receiver answered {}", response.status()).into()
                }
                Err(e) => last = e.into(),
            }
        }
        Err(WebhookError::Undelivered {
            attempts: BACKOFF.len() + 1,
            source: last,
        })
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_allowed_hosts_pass() {
        let policy = CallbackPolicy::new(&["hooks.example.com".into(), "10.0.0.7".into()]);
        for ok in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/x",
            "http://[::1]:80/",
            "https://HOOKS.example.com/a",
            "http://10.0.0.7/",
        ] {
            assert!(policy.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.8/",
            "https://evil.example.com/",
            "ftp://127.0.0.1/",
            "not a url",
            "http://hooks.example.com.evil.net/",
        ] {
            assert!(policy.check(bad).is_err(), "{bad}");
        }
        assert!(CallbackPolicy::default()
            .check("http://example.com/")
            .is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
