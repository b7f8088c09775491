//! colocd's own measurements: RPC and store latency histograms. Recorded
//! on every call, so an observation is a read lock on a small map and a
//! few relaxed atomic additions; the map only takes its write lock the
//! first time a label set is seen.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (the `le` labels): from
/// half a millisecond (a cached read) to ten seconds (a call at its
/// deadline).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Distinct label sets each histogram family keeps at most. colocd's
/// services and store operations are a few dozen; past this, new label
/// sets are counted under `OVERFLOW` so that a caller passing unbounded
/// values cannot grow colocd's memory or the scrape without end.
pub const MAX_LABEL_SETS: usize = 1024;

/// The label value used once [`MAX_LABEL_SETS`] is reached.
pub const OVERFLOW: &str = "other";

/// One latency histogram: non-cumulative bucket counts (cumulated when
/// rendered), the count and the sum in nanoseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram's values at one instant, buckets cumulative as the text
/// format wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValues {
    pub cumulative: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The values now. Relaxed loads: a scrape racing an observation may
    /// see the count without its bucket for one scrape, which the text
    /// format tolerates (the `+Inf` bucket is the count).
    pub fn values(&self) -> HistogramValues {
        let mut cumulative = [0u64; LATENCY_BUCKETS.len()];
        let mut running = 0u64;
        for (slot, bucket) in cumulative.iter_mut().zip(&self.buckets) {
            running += bucket.load(Ordering::Relaxed);
            *slot = running;
        }
        let count = self.count.load(Ordering::Relaxed).max(running);
        HistogramValues {
            cumulative,
            count,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A gRPC status code as the `code` label spells it: gRPC's own names, as
/// every gRPC dashboard expects them.
pub fn code_label(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "Canceled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}

/// The service and method of a gRPC request path
/// ("/coloc.controller.v1.Nodes/ListNodes"), for [`Metrics::observe_rpc`];
/// None for anything else.
pub fn grpc_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// Histograms keyed by a tuple of label values. The map's key is the
/// values joined by NUL, built in a per-thread buffer so that finding an
/// existing series allocates nothing.
#[derive(Debug, Default)]
struct Family {
    series: RwLock<HashMap<Box<str>, Series>>,
}

#[derive(Debug)]
struct Series {
    labels: Vec<Box<str>>,
    histogram: Histogram,
}

thread_local! {
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

fn with_key<R>(labels: &[&str], f: impl FnOnce(&str) -> R) -> R {
    KEY.with(|cell| {
        let mut key = cell.borrow_mut();
        key.clear();
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                key.push('\0');
            }
            key.push_str(label);
        }
        f(&key)
    })
}

impl Family {
    fn observe(&self, labels: &[&str], elapsed: Duration) {
        // A poisoned lock only means a panic elsewhere while holding it;
        // the map itself is always consistent (inserts are single calls).
        let found = with_key(labels, |key| {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            match map.get(key) {
                Some(series) => {
                    series.histogram.observe(elapsed);
                    true
                }
                None => false,
            }
        });
        if !found {
            self.insert(labels, elapsed);
        }
    }

    fn insert(&self, labels: &[&str], elapsed: Duration) {
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let overflow: Vec<&str>;
        let mut labels = labels;
        let full = with_key(labels, |key| !map.contains_key(key)) && map.len() >= MAX_LABEL_SETS;
        if full {
            overflow = vec![OVERFLOW; labels.len()];
            labels = &overflow;
        }
        let key: Box<str> = with_key(labels, |k| Box::from(k));
        map.entry(key)
            .or_insert_with(|| Series {
                labels: labels.iter().map(|s| Box::from(*s)).collect(),
                histogram: Histogram::default(),
            })
            .histogram
            .observe(elapsed);
    }

    /// Every series, sorted by labels so that scrapes are stable.
    fn values(&self) -> Vec<(Vec<Box<str>>, HistogramValues)> {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = map
            .values()
            .map(|s| (s.labels.clone(), s.histogram.values()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// colocd's own metrics, shared by every handler.
#[derive(Debug, Default)]
pub struct Metrics {
    rpc: Family,
    store: Family,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// One finished gRPC call: `service` as in the path
    /// ("coloc.controller.v1.Nodes"), `method` ("ListNodes"). Pass only
    /// names colocd serves, not a path a client made up.
    pub fn observe_rpc(&self, service: &str, method: &str, code: tonic::Code, elapsed: Duration) {
        self.rpc
            .observe(&[service, method, code_label(code)], elapsed);
    }

    /// One store operation ("nodes.list", "health.put").
    pub fn observe_store(&self, op: &str, elapsed: Duration) {
        self.store.observe(&[op], elapsed);
    }

    /// `(service, method, code)` and their values.
    pub fn rpc_values(&self) -> Vec<(Vec<Box<str>>, HistogramValues)> {
        self.rpc.values()
    }

    /// `(op)` and their values.
    pub fn store_values(&self) -> Vec<(Vec<Box<str>>, HistogramValues)> {
        self.store.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let v = h.values();
        assert_eq!(v.cumulative[0], 1);
        assert_eq!(v.cumulative[3], 2); // le=0.005
        assert_eq!(v.cumulative[LATENCY_BUCKETS.len() - 1], 2);
        assert_eq!(v.count, 3);
        assert!((v.sum_seconds - 60.0031).abs() < 1e-9);
    }

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(
            grpc_path("/coloc.controller.v1.Nodes/ListNodes"),
            Some(("coloc.controller.v1.Nodes", "ListNodes"))
        );
        for bad in ["", "/", "/svc", "/svc/", "//m", "svc/m", "/a/b/c"] {
            assert_eq!(grpc_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn label_sets_are_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_LABEL_SETS + 10 {
            m.observe_store(&format!("op{i}"), Duration::from_millis(1));
        }
        let values = m.store_values();
        assert_eq!(values.len(), MAX_LABEL_SETS + 1);
        let other = values.iter().find(|(k, _)| &*k[0] == OVERFLOW).unwrap();
        assert_eq!(other.1.count, 10);
    }

    #[test]
    fn rpc_series_are_keyed_by_service_method_and_code() {
        let m = Metrics::new();
        m.observe_rpc("svc", "Get", tonic::Code::Ok, Duration::from_millis(1));
        m.observe_rpc("svc", "Get", tonic::Code::Ok, Duration::from_millis(2));
        m.observe_rpc(
            "svc",
            "Get",
            tonic::Code::NotFound,
            Duration::from_millis(1),
        );
        let values = m.rpc_values();
        assert_eq!(values.len(), 2);
        assert_eq!(&*values[0].0[2], "NotFound");
        assert_eq!(values[1].1.count, 2);
    }
}
