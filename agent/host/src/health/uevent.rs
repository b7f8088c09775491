//! The kernel's device events (uevents, netlink(7) `NETLINK_KOBJECT_UEVENT`,
//! kernel multicast group 1): the health loop collects again soon after a
//! disk appears, goes or changes, or an NVMe controller raises an
//! asynchronous event (a critical warning, a temperature crossing).
//!
//! Only those events are handed out; everything else the kernel announces
//! (partitions, loop and device-mapper devices, network, USB, ...) is
//! ignored, and a datagram that is not a kernel uevent (udev's own
//! rebroadcasts start with "libudev") or lacks its fields is skipped, not
//! an error. When the kernel dropped events because the socket's buffer
//! was full, a [`DeviceEvent`] with action `overrun` says so: something
//! changed, and a new collection is the answer.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, setsockopt,
    socket, sockopt,
};
use nix::sys::time::TimeVal;
use tokio::sync::mpsc;

/// The kernel's own uevent multicast group (udev's is 2).
const KERNEL_GROUP: u32 = 1;

/// Largest uevent the kernel sends (UEVENT_BUFFER_SIZE is 2048), with room.
const BUFFER_BYTES: usize = 8192;

/// Kernel block-device names that are not disks worth watching.
const SKIPPED_DEVICES: &[&str] = &["loop", "ram", "zram", "sr", "dm-", "zd", "nbd"];

/// One device event the health loop reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// `add`, `remove`, `change`, or `overrun` (events were lost).
    pub action: String,
    /// The kernel name: `sda`, `nvme0n1`, `nvme0`; empty for `overrun`.
    pub devname: String,
    /// `block` or `nvme`.
    pub subsystem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    #[error("could not open the kernel's device event socket")]
    Open {
        #[source]
        source: std::io::Error,
    },
    #[error("could not read the kernel's device events")]
    Receive {
        #[source]
        source: std::io::Error,
    },
    /// The sending side of a [`FakeDeviceEvents`] is gone.
    #[error("the device event source was closed")]
    Closed,
}

/// A source of device events.
#[async_trait]
pub trait DeviceEvents: Send {
    /// The next event worth a new collection; waits until there is one.
    async fn next(&mut self) -> Result<DeviceEvent, UeventError>;
}

/// The kernel's uevents, read from a netlink socket by a thread of its
/// own (blocking reads; the thread ends within `POLL` (5 s) of this value
/// being dropped).
#[derive(Debug)]
pub struct RealDeviceEvents {
    rx: mpsc::Receiver<Result<DeviceEvent, UeventError>>,
}

/// How often the reading thread checks whether anyone still listens.
const POLL: Duration = Duration::from_secs(5);

impl RealDeviceEvents {
    /// Opens and binds the socket and starts the thread reading it.
    pub fn open() -> Result<RealDeviceEvents, UeventError> {
        let open = |e: nix::errno::Errno| UeventError::Open {
            source: std::io::Error::from(e),
        };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(open)?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP)).map_err(open)?;
        let poll = TimeVal::new(POLL.as_secs() as _, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &poll).map_err(open)?;
        let (tx, rx) = mpsc::channel(64);
        std::thread::Builder::new()
            .name("coloc-uevents".into())
            .spawn(move || read_loop(&fd, &tx))
            .map_err(|source| UeventError::Open { source })?;
        Ok(RealDeviceEvents { rx })
    }
}

/// Reads datagrams until the receiver is gone or the socket fails.
fn read_loop(fd: &OwnedFd, tx: &mpsc::Sender<Result<DeviceEvent, UeventError>>) {
    let mut buffer = vec![0u8; BUFFER_BYTES];
    loop {
        let event = match recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(len) => match parse_uevent(&buffer[..len]) {
                Some(event) => Ok(event),
                None => continue,
            },
            // The receive timeout: see whether anyone still listens.
            Err(Errno::EAGAIN | Errno::EINTR) => {
                if tx.is_closed() {
                    return;
                }
                continue;
            }
            // The kernel dropped events: something changed.
            Err(Errno::ENOBUFS) => Ok(DeviceEvent {
                action: "overrun".into(),
                devname: String::new(),
                subsystem: String::new(),
            }),
            Err(e) => Err(UeventError::Receive {
                source: std::io::Error::from(e),
            }),
        };
        let failed = event.is_err();
        if tx.blocking_send(event).is_err() || failed {
            return;
        }
    }
}

#[async_trait]
impl DeviceEvents for RealDeviceEvents {
    async fn next(&mut self) -> Result<DeviceEvent, UeventError> {
        match self.rx.recv().await {
            Some(result) => result,
            None => Err(UeventError::Receive {
                source: std::io::Error::other("the device event reader stopped"),
            }),
        }
    }
}

/// Device events sent by a test through the paired sender.
#[derive(Debug)]
pub struct FakeDeviceEvents {
    rx: mpsc::Receiver<DeviceEvent>,
}

impl FakeDeviceEvents {
    /// The sender a test pushes events into, and the source that yields
    /// them in order; [`UeventError::Closed`] once the sender is dropped
    /// and the queue is empty.
    pub fn channel() -> (mpsc::Sender<DeviceEvent>, FakeDeviceEvents) {
        let (tx, rx) = mpsc::channel(64);
        (tx, FakeDeviceEvents { rx })
    }
}

#[async_trait]
impl DeviceEvents for FakeDeviceEvents {
    async fn next(&mut self) -> Result<DeviceEvent, UeventError> {
        self.rx.recv().await.ok_or(UeventError::Closed)
    }
}

/// Reads one kernel uevent datagram ("ACTION@DEVPATH\0KEY=VALUE\0...")
/// and keeps it if the health loop cares: a whole disk added, removed or
/// changed (`SUBSYSTEM=block`, `DEVTYPE=disk`, not a loop, RAM,
/// device-mapper, zvol or optical device), or an NVMe controller's change
/// event (asynchronous event notification). `None` for anything else,
/// malformed datagrams included.
pub fn parse_uevent(datagram: &[u8]) -> Option<DeviceEvent> {
    let mut fields = datagram.split(|b| *b == 0);
    let header = std::str::from_utf8(fields.next()?).ok()?;
    // udev's rebroadcasts start with "libudev"; kernel ones with "action@".
    let (header_action, _devpath) = header.split_once('@')?;
    let mut action = None;
    let mut subsystem = None;
    let mut devname = None;
    let mut devtype = None;
    for field in fields {
        let Ok(field) = std::str::from_utf8(field) else {
            continue;
        };
        match field.split_once('=') {
            Some(("ACTION", v)) => action = Some(v),
            Some(("SUBSYSTEM", v)) => subsystem = Some(v),
            Some(("DEVNAME", v)) => devname = Some(v),
            Some(("DEVTYPE", v)) => devtype = Some(v),
            _ => {}
        }
    }
    let action = action?;
    if action != header_action {
        return None;
    }
    // DEVNAME is relative to /dev ("sda", "nvme0"); some kernels give it
    // with the prefix.
    let devname = devname?.trim_start_matches("/dev/");
    if devname.is_empty() || devname.contains('/') {
        return None;
    }
    let wanted = match subsystem? {
        "block" => {
            devtype == Some("disk")
                && matches!(action, "add" | "remove" | "change")
                && !SKIPPED_DEVICES.iter().any(|p| devname.starts_with(p))
        }
        "nvme" => action == "change",
        _ => false,
    };
    wanted.then(|| DeviceEvent {
        action: action.to_owned(),
        devname: devname.to_owned(),
        subsystem: subsystem.unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(fields: &[&str]) -> Vec<u8> {
        fields.join("\0").into_bytes()
    }

    #[test]
    fn whole_disks_added_removed_or_changed_are_kept() {
        let add = datagram(&[
            "add@/devices/pci0000:00/0000:00:04.0/virtio2/block/vdb",
            "ACTION=add",
            "DEVPATH=/devices/pci0000:00/0000:00:04.0/virtio2/block/vdb",
            "SUBSYSTEM=block",
            "MAJOR=254",
            "MINOR=16",
            "DEVNAME=vdb",
            "DEVTYPE=disk",
            "DISKSEQ=3",
            "SEQNUM=2310",
            "",
        ]);
        assert_eq!(
            parse_uevent(&add),
            Some(DeviceEvent {
                action: "add".into(),
                devname: "vdb".into(),
                subsystem: "block".into(),
            })
        );
        let remove = datagram(&[
            "remove@/devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0n1",
            "ACTION=remove",
            "SUBSYSTEM=block",
            "DEVNAME=nvme0n1",
            "DEVTYPE=disk",
        ]);
        assert_eq!(parse_uevent(&remove).unwrap().action, "remove");
        let prefixed = datagram(&[
            "change@/devices/x/block/sdb",
            "ACTION=change",
            "SUBSYSTEM=block",
            "DEVNAME=/dev/sdb",
            "DEVTYPE=disk",
        ]);
        assert_eq!(parse_uevent(&prefixed).unwrap().devname, "sdb");
    }

    #[test]
    fn nvme_asynchronous_events_are_kept() {
        let aen = datagram(&[
            "change@/devices/pci0000:00/0000:00:05.0/nvme/nvme0",
            "ACTION=change",
            "DEVPATH=/devices/pci0000:00/0000:00:05.0/nvme/nvme0",
            "SUBSYSTEM=nvme",
            "NVME_AEN=0x010002",
            "MAJOR=243",
            "MINOR=0",
            "DEVNAME=nvme0",
            "SEQNUM=4242",
        ]);
        assert_eq!(
            parse_uevent(&aen),
            Some(DeviceEvent {
                action: "change".into(),
                devname: "nvme0".into(),
                subsystem: "nvme".into(),
            })
        );
    }

    #[test]
    fn everything_else_is_ignored() {
        let cases: Vec<Vec<u8>> =
            vec![
            // A partition.
            datagram(&[
                "add@/block/vdb/vdb1",
                "ACTION=add",
                "SUBSYSTEM=block",
                "DEVNAME=vdb1",
                "DEVTYPE=partition",
            ]),
            // Loop and device-mapper disks come and go with every volume.
            datagram(&[
                "change@/devices/virtual/block/loop0",
                "ACTION=change",
                "SUBSYSTEM=block",
                "DEVNAME=loop0",
                "DEVTYPE=disk",
            ]),
            datagram(&[
                "add@/devices/virtual/block/dm-3",
                "ACTION=add",
                "SUBSYSTEM=block",
                "DEVNAME=dm-3",
                "DEVTYPE=disk",
            ]),
            // A name below /dev that is not a disk's.
            datagram(&[
                "add@/devices/virtual/block/x",
                "ACTION=add",
                "SUBSYSTEM=block",
                "DEVNAME=mapper/x",
                "DEVTYPE=disk",
            ]),
            // A network interface.
            datagram(&[
                "add@/devices/virtual/net/veth0",
                "ACTION=add",
                "SUBSYSTEM=net",
                "INTERFACE=veth0",
            ]),
            // A disk event other than add/remove/change.
            datagram(&[
                "bind@/devices/x/block/sda",
                "ACTION=bind",
                "SUBSYSTEM=block",
                "DEVNAME=sda",
                "DEVTYPE=disk",
            ]),
            // An NVMe controller added (its namespaces come as block events).
            datagram(&[
                "add@/devices/x/nvme/nvme1",
                "ACTION=add",
                "SUBSYSTEM=nvme",
                "DEVNAME=nvme1",
            ]),
            // udev's rebroadcast, binary header.
            b"libudev\0\xfe\xed\xca\xfe\0ACTION=add\0SUBSYSTEM=block\0DEVNAME=sda\0DEVTYPE=disk"
                .to_vec(),
            // Malformed: no header, mismatched action, missing fields,
            // garbage bytes, empty.
            datagram(&["ACTION=add", "SUBSYSTEM=block", "DEVNAME=sda", "DEVTYPE=disk"]),
            datagram(&[
                "add@/block/sda",
                "ACTION=remove",
                "SUBSYSTEM=block",
                "DEVNAME=sda",
                "DEVTYPE=disk",
            ]),
            datagram(&["add@/block/sda", "ACTION=add", "SUBSYSTEM=block"]),
            b"\xff\xfe@\0\x00\x01".to_vec(),
            Vec::new(),
        ];
        for case in cases {
            assert_eq!(
                parse_uevent(&case),
                None,
                "{:?}",
                String::from_utf8_lossy(&case)
            );
        }
    }

    #[tokio::test]
    async fn the_fake_yields_what_was_sent_then_says_closed() {
        let (tx, mut events) = FakeDeviceEvents::channel();
        let event = DeviceEvent {
            action: "remove".into(),
            devname: "vdc".into(),
            subsystem: "block".into(),
        };
        tx.send(event.clone()).await.unwrap();
        drop(tx);
        assert_eq!(events.next().await.unwrap(), event);
        assert!(matches!(events.next().await, Err(UeventError::Closed)));
    }

    #[tokio::test]
    async fn the_kernel_socket_opens_or_says_why_not() {
        // Containers may refuse netlink; either way the answer is typed.
        match RealDeviceEvents::open() {
            Ok(events) => assert!(!events.rx.is_closed()),
            Err(e) => assert!(matches!(e, UeventError::Open { .. }), "{e:?}"),
        }
    }
}
