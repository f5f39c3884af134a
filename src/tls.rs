//! The process-wide rustls crypto provider of the TLS clients (the remote CLI's `--server
//! https://…`, https callback URLs). reqwest is built without a provider of its own, so the
//! build stays on ring, as the server side (`serve --tls-cert`) already is, and needs no cmake.

/// Installs ring as the process's default rustls provider (once; a provider another part of the
/// program installed first is kept).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    });
}
