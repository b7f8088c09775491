//! The instance's systemd unit, rendered as text by a pure function.
//!
//! Values from the specification are validated before they get here
//! ([`AppDecl`], proto's rules); the quoting below is the second line of defence and
//! refuses control characters on its own. Every command-line word is a
//! double-quoted systemd word: `\` and `"` are backslash-escaped (so no
//! C escape such as `\n` can be smuggled in), `%` becomes `%%` (no
//! specifier expansion) and `$` becomes `$$` (no environment variable
//! expansion). `Environment=` assignments are quoted the same way except
//! for `$`, which systemd does not expand there and would keep doubled.

use coloc_proto::domain::InvalidInput;

use coloc_proto::apps::{AppDecl, check_env_key};

/// Where systemd looks for the units the agent writes.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// Whether `$` is special where the word goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dollar {
    /// `ExecStart=`: `$FOO`, `${FOO}` are expanded; `$$` is a literal `$`.
    Expanded,
    /// `Environment=`: `$` has no special meaning.
    Literal,
}

fn quote(value: &str, dollar: Dollar) -> Result<String, InvalidInput> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            c if c.is_control() => {
                return Err(InvalidInput::field(
                    "unit value",
                    format!("contains the control character {c:?}"),
                ));
            }
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollar == Dollar::Expanded => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// One word of an `Exec*=` command line, quoted so that systemd passes it
/// to the program byte for byte as one argument.
pub fn quote_exec_word(value: &str) -> Result<String, InvalidInput> {
    quote(value, Dollar::Expanded)
}

/// One `KEY=value` assignment of `Environment=`, quoted as a whole.
pub fn quote_environment(key: &str, value: &str) -> Result<String, InvalidInput> {
    check_env_key(key)?;
    quote(&format!("{key}={value}"), Dollar::Literal)
}

/// The unit file of `app`.
pub fn render_unit(app: &AppDecl) -> Result<String, InvalidInput> {
    let mut command = quote_exec_word(&app.exec)?;
    for arg in &app.args {
        command.push(' ');
        command.push_str(&quote_exec_word(arg)?);
    }
    let data = &app.data_dir;
    let config = &app.config_dir;
    let mut unit = String::new();
    let mut line = |text: &str| {
        unit.push_str(text);
        unit.push('\n');
    };
    line("# Written by coloc-agent from the node's desired configuration;");
    line("# local changes are overwritten.");
    line("[Unit]");
    line(&format!(
        "Description=coloc app {} of tenant {}",
        app.app, app.tenant
    ));
    line("After=network.target");
    line("StartLimitIntervalSec=60");
    line("StartLimitBurst=5");
    line("");
    line("[Service]");
    line("Type=simple");
    line(&format!("User={}", app.uid));
    line(&format!("Group={}", app.gid));
    line(&format!("ExecStart={command}"));
    for (key, value) in &app.environment {
        line(&format!("Environment={}", quote_environment(key, value)?));
    }
    line(&format!("WorkingDirectory={data}"));
    line("ProtectSystem=strict");
    line("ProtectHome=yes");
    line("PrivateTmp=yes");
    line("PrivateDevices=yes");
    line("NoNewPrivileges=yes");
    line("ProtectKernelTunables=yes");
    line("ProtectKernelModules=yes");
    line("ProtectKernelLogs=yes");
    line("ProtectControlGroups=yes");
    line("RestrictSUIDSGID=yes");
    line("LockPersonality=yes");
    line("RestrictNamespaces=yes");
    line("CapabilityBoundingSet=");
    line("AmbientCapabilities=");
    // Other tenants' directories are not even visible: an empty read-only
    // tmpfs over /srv/tenants, with only this instance's data bound in.
    line("TemporaryFileSystem=/srv/tenants:ro");
    line(&format!("BindPaths={data}"));
    line(&format!("ReadWritePaths={data}"));
    line(&format!("ReadOnlyPaths={config}"));
    if app.memory_max_bytes > 0 {
        line(&format!("MemoryMax={}", app.memory_max_bytes));
    }
    if app.cpu_quota_percent > 0 {
        line(&format!("CPUQuota={}%", app.cpu_quota_percent));
    }
    line("Restart=on-failure");
    line("RestartSec=2");
    line("");
    line("[Install]");
    line("WantedBy=multi-user.target");
    Ok(unit)
}

/// `ExecStart=` of a rendered unit, for tests and diagnostics.
pub fn exec_start_line(unit: &str) -> Option<&str> {
    unit.lines().find(|l| l.starts_with("ExecStart="))
}
