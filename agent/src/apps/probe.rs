//! Health probes of an instance on `127.0.0.1:<port>`: an HTTP/1.0 `GET`
//! (healthy when a status line below 500 comes back) or a TCP connect,
//! each bounded by one timeout for the whole exchange.
//!
//! Written on tokio's `TcpStream` rather than an HTTP client: one request
//! line and one status line are all that is needed, and the request is
//! built only from values validated beforehand (a path of visible ASCII,
//! a host name of `[a-z0-9.-]`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use coloc_proto::apps::HealthCheck;

/// How long a probe may take, connection included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The most of the response read looking for the status line.
const MAX_STATUS_LINE: usize = 1024;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub healthy: bool,
    /// "HTTP 200", "TCP connect ok", or why not.
    pub detail: String,
}

impl ProbeOutcome {
    fn bad(detail: impl Into<String>) -> ProbeOutcome {
        ProbeOutcome {
            healthy: false,
            detail: detail.into(),
        }
    }
}

/// Probes `127.0.0.1:port` as `check` says, sending `host` as the HTTP
/// `Host:`. [`HealthCheck::None`] is healthy without any connection.
pub async fn probe(check: &HealthCheck, port: u16, host: &str, timeout: Duration) -> ProbeOutcome {
    let exchange = async {
        match check {
            HealthCheck::None => ProbeOutcome {
                healthy: true,
                detail: "no health check declared".into(),
            },
            HealthCheck::Tcp => match TcpStream::connect(("127.0.0.1", port)).await {
                Ok(_) => ProbeOutcome {
                    healthy: true,
                    detail: "TCP connect ok".into(),
                },
                Err(e) => ProbeOutcome::bad(format!("TCP connect to 127.0.0.1:{port}: {e}")),
            },
            HealthCheck::Http { path } => http_get(port, host, path).await,
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::bad(format!(
            "no answer on 127.0.0.1:{port} within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn http_get(port: u16, host: &str, path: &str) -> ProbeOutcome {
    let mut stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(e) => return ProbeOutcome::bad(format!("connect to 127.0.0.1:{port}: {e}")),
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: coloc-agent\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return ProbeOutcome::bad(format!("send request: {e}"));
    }
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    loop {
        if let Some(end) = head.iter().position(|b| *b == b'\n') {
            head.truncate(end);
            break;
        }
        if head.len() >= MAX_STATUS_LINE {
            return ProbeOutcome::bad("no status line in the first 1024 bytes");
        }
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return ProbeOutcome::bad(format!("read response: {e}")),
        }
    }
    match parse_status_line(&head) {
        Some(code) if code < 500 => ProbeOutcome {
            healthy: true,
            detail: format!("HTTP {code}"),
        },
        Some(code) => ProbeOutcome::bad(format!("HTTP {code}")),
        None => ProbeOutcome::bad("not an HTTP response"),
    }
}

/// The status code of `HTTP/1.x NNN ...`.
pub fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut words = line.split(' ');
    let version = words.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = words.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line(b"HTTP/1.0 200 OK\r"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 503"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20x OK"), None);
        assert_eq!(parse_status_line(b""), None);
    }
}
