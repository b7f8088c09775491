//! The Prometheus text exposition format, version 0.0.4, written by hand:
//! `# HELP`, `# TYPE`, then one line per sample, every sample of a family
//! together. Label values and help text are escaped as the format says
//! (a backslash, a double quote and a line feed in a label value; a
//! backslash and a line feed in help text), so that a value from a node
//! (a disk model, a sensor label) can never end a line or a label early.

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::U64(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::U64(u64::from(v))
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I64(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::U64(u64::from(v))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::U64(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

/// The text being built.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            out: String::with_capacity(bytes),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// Starts a family. `name` and `help` are colocd's own constants.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample line. Label names are colocd's constants; label values
    /// come from anywhere and are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.sample_with(name, labels, None, value.into());
    }

    /// One sample with an extra last label (a histogram's `le`, an enum's
    /// `state`) without building a new label slice.
    pub fn sample_with(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        value: Value,
    ) {
        self.out.push_str(name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            let mut first = true;
            for (label, v) in labels.iter().copied().chain(extra) {
                if !first {
                    self.out.push(',');
                }
                first = false;
                self.out.push_str(label);
                self.out.push_str("=\"");
                push_escaped(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        push_value(&mut self.out, value);
        self.out.push('\n');
    }
}

fn push_escaped(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

fn push_value(out: &mut String, value: Value) {
    match value {
        Value::U64(v) => push_u64(out, v),
        Value::I64(v) => {
            if v < 0 {
                out.push('-');
            }
            push_u64(out, v.unsigned_abs());
        }
        Value::F64(v) if v.is_nan() => out.push_str("NaN"),
        Value::F64(v) if v == f64::INFINITY => out.push_str("+Inf"),
        Value::F64(v) if v == f64::NEG_INFINITY => out.push_str("-Inf"),
        // Rust prints the shortest decimal that reads back to the same
        // value, never with an exponent: valid in the format.
        Value::F64(v) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v}");
        }
    }
}

/// A bucket bound as the `le` label spells it.
pub fn le_label(bound: f64) -> String {
    let mut s = String::new();
    push_value(&mut s, Value::F64(bound));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut w = Writer::default();
        w.sample("m", &[("model", "a\"b\\c\nd")], 1u64);
        assert_eq!(w.finish(), "m{model=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn values_are_written_as_the_format_reads_them() {
        let mut w = Writer::default();
        w.sample("a", &[], 0u64);
        w.sample("b", &[], u64::MAX);
        w.sample("c", &[], -42i64);
        w.sample("d", &[], 0.25f64);
        w.sample("e", &[], f64::INFINITY);
        w.sample("f", &[], f64::NAN);
        w.sample("g", &[], 1e-7f64);
        assert_eq!(
            w.finish(),
            "a 0\nb 18446744073709551615\nc -42\nd 0.25\ne +Inf\nf NaN\ng 0.0000001\n"
        );
    }

    #[test]
    fn help_is_escaped_and_type_follows() {
        let mut w = Writer::default();
        w.family("m", "a\\b\nc", Kind::Counter);
        assert_eq!(w.finish(), "# HELP m a\\\\b\\nc\n# TYPE m counter\n");
    }
}
