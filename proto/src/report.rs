//! One way to print an error with its causes, for every binary and log
//! line of coloc: `error: cause: deeper cause`.

/// An error and its causes on one line: `a: b: c`. Links with no text,
/// and links whose text the line already ends with (tonic, hyper and
/// several I/O wrappers repeat their source in their own message), are
/// left out.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.ends_with(&cause_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use std::fmt;

    #[derive(Debug)]
    struct Link(&'static str, Option<Box<Link>>);

    impl fmt::Display for Link {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Link {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn chain(links: &[&'static str]) -> Link {
        links
            .iter()
            .rev()
            .fold(None, |inner, text| Some(Link(text, inner.map(Box::new))))
            .expect("at least one link")
    }

    #[test]
    fn causes_are_joined_in_order() {
        assert_eq!(
            error_chain(&chain(&[
                "cannot enroll",
                "transport error",
                "connection refused"
            ])),
            "cannot enroll: transport error: connection refused"
        );
    }

    #[test]
    fn repeated_and_empty_links_are_left_out() {
        assert_eq!(
            error_chain(&chain(&[
                "status: connection refused",
                "connection refused",
                ""
            ])),
            "status: connection refused"
        );
        assert_eq!(error_chain(&chain(&["", "inner"])), "inner");
    }
}
