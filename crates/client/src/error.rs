//! One error type for every call to the gateway.

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call to the gateway did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway answered with an error: its stable code and message.
    #[error("gateway refused ({status}): {code}: {message}")]
    Gateway { status: u16, code: String, message: String },
    /// The gateway presented a TLS key other than the pinned one. Nothing was sent.
    #[error(
        "the gateway's TLS key does not match the pinned key (expected {expected}, got {actual}): \
         possible interception; nothing was sent"
    )]
    PinMismatch { expected: String, actual: String },
    /// The connection is not protected as required (HTTPS without a pin, or plain
    /// HTTP to a remote host).
    #[error("insecure gateway address: {0}")]
    Insecure(String),
    /// The gateway could not be reached.
    #[error("gateway unreachable: {0}")]
    Unreachable(String),
    /// The gateway did not answer in time.
    #[error("gateway timed out")]
    Timeout,
    /// What the gateway claims about an operation does not match the operation
    /// itself; the client refuses to show or sign it.
    #[error("refusing to sign: {0}")]
    Tampered(String),
    /// The gateway's answer could not be understood.
    #[error("unexpected answer from the gateway: {0}")]
    Protocol(String),
    /// The security key failed.
    #[error(transparent)]
    Key(#[from] countersign_keys::Error),
    /// The gateway asked for a signature for another relying party than the one
    /// pinned at enrollment. Nothing was signed.
    #[error(
        "the gateway asked for a signature for relying party {asked}, but this profile is pinned to {pinned}: \
         refused, nothing was signed"
    )]
    RelyingPartyChanged { pinned: String, asked: String },
    /// An enrollment link is malformed.
    #[error("enrollment link: {0}")]
    Link(String),
}

impl Error {
    /// A stable code: the gateway's own, or `client.*` / `key.*`.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Error::Gateway { code, .. } => code,
            Error::PinMismatch { .. } => "client.pin_mismatch",
            Error::Insecure(_) => "client.insecure",
            Error::Unreachable(_) => "client.unreachable",
            Error::Timeout => "client.timeout",
            Error::Tampered(_) => "client.tampered",
            Error::Protocol(_) => "client.protocol",
            Error::Key(e) => e.code(),
            Error::RelyingPartyChanged { .. } => "client.rp_changed",
            Error::Link(_) => "client.link",
        }
    }
}

impl Error {
    /// The gateway's error from a non-2xx response (`http.<status>` when it has no
    /// error body).
    pub(crate) async fn from_response(resp: reqwest::Response) -> Error {
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        let text = |k: &str| body["error"][k].as_str().map(str::to_owned);
        Error::Gateway {
            status,
            code: text("code").unwrap_or_else(|| format!("http.{status}")),
            message: text("message").unwrap_or_else(|| "no error body".into()),
        }
    }
}
