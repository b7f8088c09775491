//! Free loopback ports for forwards. The kernel picks them (bind to port 0);
//! the listeners are closed again before QEMU binds, so another process can
//! in principle take one in between, which `Vm::start` handles by retrying
//! with new ports. Within this process a port is never handed out twice,
//! so VMs started concurrently by parallel tests cannot collide.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` distinct ports that were free on 127.0.0.1 a moment ago.
pub(crate) fn pick_free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    // All listeners stay open until every port is picked, so the kernel
    // cannot give the same port twice in this batch.
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        if attempts > n * 20 + 100 {
            return Err(std::io::Error::other(
                "no free loopback port found that was not already handed out",
            ));
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        listeners.push(listener);
        if handed_out.insert(port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_distinct_bindable_and_never_reissued() {
        let first = pick_free_ports(8).unwrap();
        let second = pick_free_ports(8).unwrap();
        let all: HashSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 16);
        for port in first.iter().chain(&second) {
            assert_ne!(*port, 0);
            TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).expect("port is free");
        }
    }

    #[test]
    fn zero_ports_is_fine() {
        assert!(pick_free_ports(0).unwrap().is_empty());
    }
}
