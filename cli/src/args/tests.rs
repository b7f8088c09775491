//! The command tree as clap sees it: every command has help, values are
//! validated while parsing, and commands parse into typed values.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use coloc_proto::controller::v1 as pb;

use super::apps::{AppCommand, RequestCommand};
use super::fleet::{NodeCommand, NodeTokenCommand};
use super::storage::{PoolCommand, PoolLayoutArg, PoolTypeArg, VolumeCommand};
use super::tenancy::{OfferArg, TenantCommand};
use super::{Cli, Command};
use crate::input::Ttl;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("coloc").chain(args.iter().copied()))
}

#[test]
fn tree_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn every_argument_has_help() {
    fn walk(cmd: &clap::Command, path: &str) {
        let here = format!("{path} {}", cmd.get_name());
        if cmd.get_name() != "help" {
            assert!(cmd.get_about().is_some(), "{here} has no help");
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            assert!(arg.get_help().is_some(), "{here} --{id} has no help");
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &here);
        }
    }
    walk(&Cli::command(), "");
}

#[test]
fn globals_go_anywhere() {
    let cli = parse(&["node", "list", "--json", "--server", "https://x:1"]).unwrap();
    assert!(cli.global.json);
    assert_eq!(cli.global.server.as_deref(), Some("https://x:1"));
}

#[test]
fn names_are_validated_while_parsing() {
    let err = parse(&["node", "show", "Bad_Name"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
    assert!(err.to_string().contains("node name"), "{err}");
    let err = parse(&[
        "tenant",
        "create",
        "asso-x",
        "--offer",
        "gratuit",
        "--expires",
        "2027-01-01",
    ])
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
}

#[test]
fn commands_parse_into_typed_values() {
    let cli = parse(&[
        "tenant",
        "create",
        "asso-x",
        "--offer",
        "participatif",
        "--expires",
        "2027-06-30",
    ])
    .unwrap();
    match cli.command {
        Command::Tenant {
            command:
                TenantCommand::Create {
                    name,
                    offer,
                    expires,
                    display_name,
                },
        } => {
            assert_eq!(name.as_str(), "asso-x");
            assert_eq!(offer, OfferArg::Participatif);
            assert_eq!(expires, "2027-06-30");
            assert_eq!(display_name, None);
        }
        other => panic!("parsed as {other:?}"),
    }
    let cli = parse(&[
        "node", "token", "create", "--site", "paris-1", "--ttl", "2h",
    ])
    .unwrap();
    match cli.command {
        Command::Node {
            command:
                NodeCommand::Token {
                    command: NodeTokenCommand::Create { site, ttl },
                },
        } => {
            assert_eq!(site.as_str(), "paris-1");
            assert_eq!(ttl.map(Ttl::secs), Some(7200));
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn credential_flags_exclude_each_other() {
    assert!(parse(&["whoami", "--token", "t", "--cert", "c", "--key", "k"]).is_err());
    assert!(parse(&["whoami", "--cert", "c"]).is_err());
    assert!(parse(&["whoami", "--cert", "c", "--key", "k"]).is_ok());
}

#[test]
fn storage_commands_parse() {
    let cli = parse(&[
        "pool",
        "create",
        "--node",
        "n1",
        "--name",
        "tank",
        "--type",
        "zfs",
        "--layout",
        "mirror",
        "--disk",
        "serial:A1",
        "--disk",
        "id:nvme-X",
    ])
    .unwrap();
    match cli.command {
        Command::Pool {
            command:
                PoolCommand::Create {
                    kind,
                    layout,
                    disks,
                    force,
                    ..
                },
        } => {
            assert_eq!(kind, PoolTypeArg::Zfs);
            assert_eq!(layout, Some(PoolLayoutArg::Mirror));
            assert_eq!(disks.len(), 2);
            assert!(!force);
        }
        other => panic!("parsed as {other:?}"),
    }
    let cli = parse(&[
        "volume", "create", "--tenant", "asso-x", "--node", "n1", "--pool", "tank", "--size", "20G",
    ])
    .unwrap();
    match cli.command {
        Command::Volume {
            command: VolumeCommand::Create { size, name, .. },
        } => {
            assert_eq!(size, 20 << 30);
            assert_eq!(name.as_str(), "data");
        }
        other => panic!("parsed as {other:?}"),
    }
    for bad in [
        &[
            "volume", "create", "--tenant", "asso-x", "--node", "n1", "--pool", "tank", "--size",
            "20X",
        ][..],
        &["volume", "resize", "asso-x/data", "--size", "1M"],
        &["volume", "show", "data"],
        &[
            "pool", "create", "--node", "n1", "--name", "mirror", "--type", "zfs", "--disk",
            "serial:A",
        ],
        &[
            "pool", "create", "--node", "n1", "--name", "tank", "--type", "zfs", "--disk", "sda",
        ],
        &["tenant", "set-storage", "asso-x", "--grace-days", "0"],
        &["volume", "snapshot", "create", "asso-x/data", "Snap"],
    ] {
        let err = parse(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
    }
    assert_eq!(
        parse(&[
            "pool", "create", "--node", "n1", "--name", "tank", "--type", "zfs"
        ])
        .unwrap_err()
        .kind(),
        ErrorKind::MissingRequiredArgument
    );
}

#[test]
fn app_commands_parse() {
    let cli = parse(&["app", "logs", "asso-x/radicale", "-f"]).unwrap();
    match cli.command {
        Command::App {
            command:
                AppCommand::Logs {
                    instance,
                    lines,
                    follow,
                },
        } => {
            assert_eq!(instance.to_string(), "asso-x/radicale");
            assert_eq!(lines, 100);
            assert!(follow);
        }
        other => panic!("parsed as {other:?}"),
    }
    let cli = parse(&["request", "list", "--state", "approved"]).unwrap();
    match cli.command {
        Command::Request {
            command: RequestCommand::List { tenant, state },
        } => {
            assert_eq!(tenant, None);
            assert_eq!(
                state.map(pb::RequestState::from),
                Some(pb::RequestState::Approved)
            );
        }
        other => panic!("parsed as {other:?}"),
    }
    for bad in [
        &["app", "logs", "asso-x/radicale", "-n", "0"][..],
        &["app", "status", "asso-x"],
        &["request", "show", "0"],
        &["request", "comment", "1", "a\nb"],
    ] {
        let err = parse(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
    }
}

#[test]
fn audit_limits() {
    assert!(parse(&["audit", "--limit", "0"]).is_err());
    assert!(parse(&["audit", "--limit", "1001"]).is_err());
    assert!(parse(&["audit", "--limit", "1000", "--before", "42"]).is_ok());
}

#[test]
fn user_certificates_and_accounts() {
    use super::tenancy::{CertCommand, RoleArg, UserCommand};
    let cli = parse(&["user", "cert", "issue", "mia", "--out-dir", "/tmp/c"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::User {
            command: UserCommand::Cert {
                command: CertCommand::Issue { ref user, .. }
            }
        } if user.as_str() == "mia"
    ));
    let cli = parse(&["user", "cert", "revoke", "7f3a09"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::User {
            command: UserCommand::Cert {
                command: CertCommand::Revoke { ref serial }
            }
        } if serial.as_str() == "7f3a09"
    ));
    let err = parse(&["user", "cert", "revoke", "7F:3A"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ValueValidation);
    assert!(err.to_string().contains("certificate serial"), "{err}");
    let err = parse(&["user", "cert", "list", "--user", "mia", "--all"]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
    let cli = parse(&["user", "set-role", "mia", "--role", "operator"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::User {
            command: UserCommand::SetRole {
                role: RoleArg::Operator,
                tenant: None,
                ..
            }
        }
    ));
    let cli = parse(&["user", "delete", "mia", "--confirm", "mia"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::User {
            command: UserCommand::Delete { confirm: Some(ref c), .. }
        } if c == "mia"
    ));
    assert!(parse(&["user", "disable", "Mia"]).is_err());
}

#[test]
fn health_commands_parse() {
    use super::health::AlertCommand;
    use crate::input::DiskRef;

    let cli = parse(&["node", "health", "n1", "--json"]).unwrap();
    assert!(cli.global.json);
    assert!(matches!(
        cli.command,
        Command::Node { command: NodeCommand::Health { ref name } } if name.as_str() == "n1"
    ));
    let cli = parse(&["node", "scrub", "n1", "rpool"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Node { command: NodeCommand::Scrub { ref pool, .. } } if pool == "rpool"
    ));
    let cli = parse(&["node", "self-test", "n1", "/dev/nvme0n1"]).unwrap();
    match cli.command {
        Command::Node {
            command: NodeCommand::SelfTest { name, disk, long },
        } => {
            assert_eq!(name.as_str(), "n1");
            assert_eq!(disk, DiskRef::Device("/dev/nvme0n1".into()));
            assert!(!long);
        }
        other => panic!("parsed as {other:?}"),
    }
    let cli = parse(&["node", "self-test", "n1", "S4GNNX0N", "--long"]).unwrap();
    assert!(matches!(
        cli.command,
        Command::Node { command: NodeCommand::SelfTest { ref disk, long: true, .. } }
            if *disk == DiskRef::Serial("S4GNNX0N".into())
    ));

    let cli = parse(&[
        "alert", "list", "--all", "--node", "n1", "--tenant", "asso-x", "--limit", "50",
    ])
    .unwrap();
    match cli.command {
        Command::Alert {
            command:
                AlertCommand::List {
                    all,
                    node,
                    tenant,
                    limit,
                },
        } => {
            assert!(all);
            assert_eq!(node.map(String::from).as_deref(), Some("n1"));
            assert_eq!(tenant.map(String::from).as_deref(), Some("asso-x"));
            assert_eq!(limit, Some(50));
        }
        other => panic!("parsed as {other:?}"),
    }
    assert!(matches!(
        parse(&["alert", "list"]).unwrap().command,
        Command::Alert {
            command: AlertCommand::List {
                all: false,
                node: None,
                tenant: None,
                limit: None
            }
        }
    ));
    assert!(matches!(
        parse(&["alert", "show", "12"]).unwrap().command,
        Command::Alert {
            command: AlertCommand::Show { id: 12 }
        }
    ));
    assert!(matches!(
        parse(&["alert", "ack", "12", "--comment", "disk ordered"]).unwrap().command,
        Command::Alert { command: AlertCommand::Ack { id: 12, ref comment } } if comment == "disk ordered"
    ));
    assert!(matches!(
        parse(&["alert", "silence", "12", "--for", "3d"])
            .unwrap()
            .command,
        Command::Alert {
            command: AlertCommand::Silence {
                id: 12,
                duration_secs: 259_200,
                comment: None
            }
        }
    ));
    assert!(matches!(
        parse(&["alert", "silence", "7", "--for", "2h", "--comment", "swap"]).unwrap().command,
        Command::Alert {
            command: AlertCommand::Silence { id: 7, duration_secs: 7200, comment: Some(ref c) }
        } if c == "swap"
    ));
    assert!(matches!(
        parse(&["alert", "unsilence", "7"]).unwrap().command,
        Command::Alert {
            command: AlertCommand::Unsilence { id: 7 }
        }
    ));
}

#[test]
fn health_commands_refuse_bad_values_with_words() {
    for (bad, words) in [
        (&["alert", "show", "0"][..], "from 1"),
        (&["alert", "show", "twelve"], "coloc alert list"),
        (
            &["alert", "silence", "1", "--for", "31d"],
            "longer than 30 days",
        ),
        (&["alert", "silence", "1", "--for", "2"], "no unit"),
        (
            &["alert", "silence", "1", "--for", "0h"],
            "longer than zero",
        ),
        (&["alert", "ack", "1", "--comment", " "], "empty"),
        (&["alert", "ack", "1", "--comment", "a\nb"], "comment"),
        (&["alert", "list", "--limit", "0"], "0"),
        (&["alert", "list", "--limit", "1001"], "1001"),
        (&["alert", "list", "--node", "N1"], "node name"),
        (&["node", "scrub", "n1", "mirror-0"], "reserves"),
        (&["node", "scrub", "n1", "tank/ds"], "ZFS pool name"),
        (&["node", "self-test", "n1", "/etc/passwd"], "under /dev/"),
        (&["node", "self-test", "n1", "WD 123"], "serial"),
        (&["node", "health", "Bad_Name"], "node name"),
    ] {
        let err = parse(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad:?}: {err}");
        assert!(err.to_string().contains(words), "{bad:?}: {err}");
    }
    // Ack needs a comment, silence a duration.
    for (missing, kind) in [
        (
            &["alert", "ack", "1"][..],
            ErrorKind::MissingRequiredArgument,
        ),
        (
            &["alert", "silence", "1"],
            ErrorKind::MissingRequiredArgument,
        ),
        (&["node", "scrub", "n1"], ErrorKind::MissingRequiredArgument),
        (
            &["alert", "unsilence", "1", "--for", "1h"],
            ErrorKind::UnknownArgument,
        ),
    ] {
        assert_eq!(parse(missing).unwrap_err().kind(), kind, "{missing:?}");
    }
}
