//! A small QMP client: JSON lines over QEMU's unix socket. After the
//! greeting and `qmp_capabilities`, each command carries an `id` and the
//! client reads until the reply with that id; asynchronous events read on
//! the way (`DEVICE_DELETED`, `SHUTDOWN`, ...) are kept, so a later
//! [`Qmp::wait_event`] finds an event that arrived before anyone waited.
//!
//! No background task: the socket is only read while a caller waits, which
//! is enough for a test harness and keeps cancellation simple (the line
//! buffer lives in the client, and `read_until` appends to it, so a timeout
//! never loses half a message).

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Events kept for later waits; older ones are dropped first.
const MAX_KEPT_EVENTS: usize = 1024;

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

/// One line from the QMP socket, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpMessage {
    Greeting(Value),
    Return {
        id: Option<Value>,
        value: Value,
    },
    Error {
        id: Option<Value>,
        class: String,
        desc: String,
    },
    Event(QmpEvent),
}

/// Parses one QMP line (trailing `\r\n` allowed).
pub fn parse_message(line: &str) -> Result<QmpMessage> {
    let v: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("QMP line is not JSON: {:?}", line.trim()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("QMP line is not an object: {v}"))?;
    let id = obj.get("id").cloned();
    if let Some(greeting) = obj.get("QMP") {
        return Ok(QmpMessage::Greeting(greeting.clone()));
    }
    if let Some(value) = obj.get("return") {
        return Ok(QmpMessage::Return {
            id,
            value: value.clone(),
        });
    }
    if let Some(err) = obj.get("error") {
        let field = |k: &str| {
            err.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        return Ok(QmpMessage::Error {
            id,
            class: field("class"),
            desc: field("desc"),
        });
    }
    if let Some(name) = obj.get("event").and_then(Value::as_str) {
        return Ok(QmpMessage::Event(QmpEvent {
            name: name.to_string(),
            data: obj.get("data").cloned().unwrap_or(Value::Null),
        }));
    }
    bail!("unrecognised QMP message: {v}")
}

/// A connected, capabilities-negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: Vec<u8>,
    next_id: u64,
    events: VecDeque<QmpEvent>,
}

impl Qmp {
    /// Connects to a QMP socket and leaves negotiation mode.
    pub async fn connect(path: &Path) -> Result<Qmp> {
        let stream = UnixStream::connect(path)
            .await
            .with_context(|| format!("connecting to QMP socket {}", path.display()))?;
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(read),
            writer,
            line: Vec::new(),
            next_id: 1,
            events: VecDeque::new(),
        };
        match qmp.read_message().await? {
            QmpMessage::Greeting(_) => {}
            other => bail!("expected the QMP greeting, got {other:?}"),
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    async fn read_message(&mut self) -> Result<QmpMessage> {
        loop {
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .await
                .context("reading from QMP")?;
            if n == 0 && self.line.is_empty() {
                bail!("QMP connection closed (QEMU exited?)");
            }
            if n != 0 && !self.line.ends_with(b"\n") {
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            if line.trim().is_empty() {
                continue;
            }
            return parse_message(&line);
        }
    }

    fn keep_event(&mut self, event: QmpEvent) {
        if self.events.len() == MAX_KEPT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// Runs a command and returns its `return` value; a QMP error becomes
    /// an `Err` with its class and description.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = serde_json::to_vec(&msg).context("encoding QMP command")?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .await
            .with_context(|| format!("sending QMP command {command}"))?;
        loop {
            match self
                .read_message()
                .await
                .with_context(|| format!("waiting for the reply to QMP {command}"))?
            {
                QmpMessage::Return {
                    id: Some(got),
                    value,
                } if got == json!(id) => {
                    return Ok(value);
                }
                QmpMessage::Error {
                    id: Some(got),
                    class,
                    desc,
                } if got == json!(id) => bail!("QMP {command} failed: {class}: {desc}"),
                QmpMessage::Event(e) => self.keep_event(e),
                // Replies to commands abandoned by an earlier timeout.
                QmpMessage::Return { .. } | QmpMessage::Error { .. } => {}
                QmpMessage::Greeting(_) => bail!("unexpected QMP greeting mid-session"),
            }
        }
    }

    /// Waits for the first event (kept or new) that `matches`, removing it
    /// from the kept events.
    pub async fn wait_event(
        &mut self,
        matches: impl Fn(&QmpEvent) -> bool,
        timeout: Duration,
    ) -> Result<QmpEvent> {
        if let Some(pos) = self.events.iter().position(&matches) {
            return Ok(self.events.remove(pos).expect("position is in range"));
        }
        let wait = async {
            loop {
                match self.read_message().await? {
                    QmpMessage::Event(e) if matches(&e) => return Ok::<_, anyhow::Error>(e),
                    QmpMessage::Event(e) => self.keep_event(e),
                    _ => {}
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => bail!("no matching QMP event within {}s", timeout.as_secs_f32()),
        }
    }

    /// Events received so far and not consumed by a wait.
    pub fn events(&self) -> impl Iterator<Item = &QmpEvent> {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from QEMU 10.0.2.
    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"}, "capabilities": ["oob"]}}"#;
    const DEVICE_DELETED: &str = r#"{"timestamp": {"seconds": 1795890321, "microseconds": 546851}, "event": "DEVICE_DELETED", "data": {"device": "nvme1", "path": "/machine/peripheral/nvme1"}}"#;

    #[test]
    fn greeting_return_error_and_event_are_told_apart() {
        assert!(matches!(
            parse_message(GREETING).unwrap(),
            QmpMessage::Greeting(_)
        ));
        assert_eq!(
            parse_message("{\"return\": {}, \"id\": 3}\r\n").unwrap(),
            QmpMessage::Return {
                id: Some(json!(3)),
                value: json!({})
            }
        );
        assert_eq!(
            parse_message(
                r#"{"id": 4, "error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}}"#
            )
            .unwrap(),
            QmpMessage::Error {
                id: Some(json!(4)),
                class: "DeviceNotFound".into(),
                desc: "Device 'x' not found".into()
            }
        );
        assert_eq!(
            parse_message(DEVICE_DELETED).unwrap(),
            QmpMessage::Event(QmpEvent {
                name: "DEVICE_DELETED".into(),
                data: json!({"device": "nvme1", "path": "/machine/peripheral/nvme1"})
            })
        );
        assert!(matches!(
            parse_message(r#"{"return": {"status": "running", "running": true}}"#).unwrap(),
            QmpMessage::Return { id: None, .. }
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_message("not json").is_err());
        assert!(parse_message("[1, 2]").is_err());
        assert!(parse_message(r#"{"something": "else"}"#).is_err());
    }

    /// A fake QEMU on a socket pair: checks the client's protocol, including
    /// an event that arrives before the reply and is found by a later wait,
    /// and a reply split across two writes.
    #[tokio::test]
    async fn client_negotiates_runs_commands_and_keeps_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write
                .write_all(format!("{GREETING}\r\n").as_bytes())
                .await
                .unwrap();
            let cap: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!(cap["execute"], "qmp_capabilities");
            write
                .write_all(format!("{{\"return\": {{}}, \"id\": {}}}\r\n", cap["id"]).as_bytes())
                .await
                .unwrap();
            let del: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            assert_eq!(del["execute"], "device_del");
            assert_eq!(del["arguments"], json!({"id": "nvme1"}));
            write
                .write_all(format!("{DEVICE_DELETED}\r\n").as_bytes())
                .await
                .unwrap();
            let reply = format!("{{\"return\": {{}}, \"id\": {}}}\r\n", del["id"]);
            let (a, b) = reply.split_at(7);
            write.write_all(a.as_bytes()).await.unwrap();
            write.flush().await.unwrap();
            tokio::task::yield_now().await;
            write.write_all(b.as_bytes()).await.unwrap();
            let bad: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            write
                .write_all(
                    format!(
                        "{{\"id\": {}, \"error\": {{\"class\": \"DeviceNotFound\", \"desc\": \"Device 'nope' not found\"}}}}\r\n",
                        bad["id"]
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
            // Keep the connection open until the client is done.
            let _ = lines.next_line().await;
        });

        let mut qmp = Qmp::connect(&path).await.unwrap();
        let value = qmp
            .execute("device_del", Some(json!({"id": "nvme1"})))
            .await
            .unwrap();
        assert_eq!(value, json!({}));
        assert_eq!(qmp.events().count(), 1);
        let event = qmp
            .wait_event(
                |e| e.name == "DEVICE_DELETED" && e.data["device"] == "nvme1",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(event.data["path"], "/machine/peripheral/nvme1");
        assert_eq!(qmp.events().count(), 0);
        let err = qmp
            .execute("device_del", Some(json!({"id": "nope"})))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("DeviceNotFound"), "{err}");
        let timeout = qmp
            .wait_event(|e| e.name == "SHUTDOWN", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(timeout.to_string().contains("no matching QMP event"));
        drop(qmp);
        server.await.unwrap();
    }
}
