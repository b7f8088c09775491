//! How a task words what it did: one short line, the same shape for every
//! task ("marked 2 nodes unreachable (n1, n2)").

/// `3 nodes (n1, n2, n3)`, with at most a few names so that a summary stays
/// one short line on a large fleet.
pub(super) fn counted<T: std::fmt::Display>(items: &[T], one: &str, many: &str) -> String {
    const SHOWN: usize = 5;
    let noun = if items.len() == 1 { one } else { many };
    let mut names: Vec<String> = items.iter().take(SHOWN).map(ToString::to_string).collect();
    if items.len() > SHOWN {
        names.push("…".to_string());
    }
    format!("{} {noun} ({})", items.len(), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn summaries_name_a_few_items() {
        assert_eq!(counted(&["n1"], "node", "nodes"), "1 node (n1)");
        assert_eq!(
            counted(&["a", "b", "c", "d", "e", "f"], "node", "nodes"),
            "6 nodes (a, b, c, d, e, …)"
        );
    }
}
