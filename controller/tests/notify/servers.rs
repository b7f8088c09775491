//! The real servers the notification tests talk to: an SMTP server
//! (Debian's python3-aiosmtpd, run with /usr/bin/python3) that writes each
//! message it takes to a file, and an HTTP(S) endpoint served over real
//! TCP that records each request and answers the statuses it is given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use coloc_controller::notify::{EmailConfig, SmtpTls, WebhookConfig, WebhookFormat};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::DEADLINE;

// ------------------------------------------------------------ SMTP server

/// A real SMTP server: aiosmtpd on 127.0.0.1, one file per message taken,
/// with STARTTLS required or TLS from the first byte, and a login, when
/// asked.
const SMTP_SERVER: &str = r#"
import asyncio, os, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

out_dir, mode, cert, key, user, password = sys.argv[1:7]
count = 0

class Handler:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        path = os.path.join(out_dir, "%04d.eml" % count)
        with open(path + ".tmp", "wb") as f:
            f.write(("X-Envelope-From: %s\r\nX-Envelope-To: %s\r\nX-Test-TLS: %s\r\nX-Test-Auth: %s\r\n" % (
                envelope.mail_from, ",".join(envelope.rcpt_tos),
                server.transport.get_extra_info("ssl_object") is not None,
                bool(session.authenticated))).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == user.encode() and auth_data.password == password.encode())
    return AuthResult(success=ok, handled=False)

async def main():
    loop = asyncio.get_running_loop()
    kwargs = dict(hostname="localhost")
    ctx = None
    if mode:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
    if mode == "starttls":
        kwargs.update(tls_context=ctx, require_starttls=True)
    if user:
        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(mode))
    server = await loop.create_server(lambda: SMTP(Handler(), **kwargs), "127.0.0.1", 0,
                                      ssl=ctx if mode == "smtps" else None)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

pub(crate) struct SmtpServer {
    pub(crate) port: u16,
    dir: PathBuf,
    child: tokio::process::Child,
}

#[derive(Default)]
pub(crate) struct SmtpOptions {
    /// Certificate and key files: STARTTLS offered and required.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
    /// With `tls`: TLS from the first byte (SMTPS) instead of STARTTLS.
    pub(crate) implicit_tls: bool,
    pub(crate) login: Option<(String, String)>,
}

impl SmtpServer {
    pub(crate) async fn start(work: &Path, options: SmtpOptions) -> SmtpServer {
        let dir = work.join("mail");
        std::fs::create_dir_all(&dir).unwrap();
        let script = work.join("smtp_server.py");
        std::fs::write(&script, SMTP_SERVER).unwrap();
        let mode = match (&options.tls, options.implicit_tls) {
            (None, _) => "",
            (Some(_), false) => "starttls",
            (Some(_), true) => "smtps",
        };
        let (cert, key) = options
            .tls
            .map(|(c, k)| (c.display().to_string(), k.display().to_string()))
            .unwrap_or_default();
        let (user, password) = options.login.unwrap_or_default();
        let log = work.join("smtp_server.log");
        // The test's SMTP server, not a host command (the agent's runner
        // is not in this crate). Debian's python3 has aiosmtpd; the python3
        // first on PATH may not.
        #[allow(clippy::disallowed_methods)]
        let mut child = tokio::process::Command::new("/usr/bin/python3")
            .arg(&script)
            .args([
                dir.display().to_string(),
                mode.to_string(),
                cert,
                key,
                user,
                password,
            ])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("run /usr/bin/python3 (apt-get install python3-aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the SMTP server did not start in time")
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "the SMTP server did not print its port (is python3-aiosmtpd installed?): {line:?}\n{log}"
            )
        });
        SmtpServer { port, dir, child }
    }

    /// The messages taken so far, oldest first.
    pub(crate) fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // kill_on_drop sends the signal; this makes it explicit and early.
        if let Err(e) = self.child.start_kill() {
            eprintln!("cannot stop the SMTP server: {e}");
        }
    }
}

/// The Subject header of a message, unfolded.
pub(crate) fn subject_of(message: &str) -> String {
    let mut lines = message.split("\r\n");
    let mut subject = String::new();
    for line in lines.by_ref() {
        if let Some(s) = line.strip_prefix("Subject: ") {
            subject.push_str(s);
            break;
        }
    }
    for line in lines {
        match line.strip_prefix(' ') {
            Some(rest) => {
                subject.push(' ');
                subject.push_str(rest);
            }
            None => break,
        }
    }
    subject
}

pub(crate) fn body_of(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

pub(crate) fn local_email(port: u16) -> EmailConfig {
    EmailConfig {
        host: "127.0.0.1".to_string(),
        port,
        tls: SmtpTls::None,
        username: None,
        password_file: None,
        from: "coloc <alerts@coloc.test>".to_string(),
        to: vec![
            "admins@coloc.test".to_string(),
            "oncall@coloc.test".to_string(),
        ],
        ca_file: None,
    }
}

// ------------------------------------------------------------ HTTP server

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) path: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

/// A real HTTP/1.1 endpoint (one request per connection), answering the
/// statuses queued, then 200.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

impl Endpoint {
    pub(crate) async fn start(
        statuses: &[u16],
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let endpoint = Endpoint {
            url: format!("{scheme}://{host}:{port}/hooks/coloc"),
            requests: Arc::default(),
            statuses: Arc::new(Mutex::new(statuses.iter().rev().copied().collect())),
        };
        let served = endpoint.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let served = served.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                served.serve(stream).await;
                            }
                        }
                        None => served.serve(stream).await,
                    }
                });
            }
        });
        endpoint
    }

    async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(&self, stream: S) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers
            .get("content-length")
            .map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await.unwrap();
        let status = self.statuses.lock().unwrap().pop().unwrap_or(200);
        self.requests.lock().unwrap().push(Request {
            path,
            headers,
            body: String::from_utf8(body).unwrap(),
        });
        let answer =
            format!("HTTP/1.1 {status} X\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope");
        let mut stream = reader.into_inner();
        stream.write_all(answer.as_bytes()).await.unwrap();
        stream.shutdown().await.ok();
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

pub(crate) fn webhook(name: &str, url: &str, format: WebhookFormat) -> WebhookConfig {
    WebhookConfig {
        name: name.to_string(),
        url: url.to_string(),
        format,
        token_file: None,
        ca_file: None,
    }
}

/// A CA and a certificate for "localhost" it signed, as PEM files.
pub(crate) fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "coloc test mail CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (ca, crt, k) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (ca, crt, k)
}
