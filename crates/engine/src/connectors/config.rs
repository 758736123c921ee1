//! Config files: backed up like files, but each YAML, JSON or TOML file's syntax is checked at
//! backup time. An invalid file is still stored (it is what is deployed) and reported as a
//! warning in the snapshot summary, naming the line.

/// Returns a description of the syntax error, or None if the file parses (or is of a kind we
/// do not check).
pub fn validate_syntax(path: &str, data: &[u8]) -> Option<String> {
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "json" => serde_json::from_slice::<serde_json::Value>(data)
            .err()
            .map(|e| {
                format!(
                    "invalid JSON at line {}, column {}: {e}",
                    e.line(),
                    e.column()
                )
            }),
        "yaml" | "yml" => {
            // A file may hold several YAML documents.
            let text = match std::str::from_utf8(data) {
                Ok(t) => t,
                Err(e) => return Some(format!("invalid YAML: not UTF-8 ({e})")),
            };
            for doc in serde_yaml_ng::Deserializer::from_str(text) {
                if let Err(e) = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc) {
                    return Some(match e.location() {
                        Some(l) => format!(
                            "invalid YAML at line {}, column {}: {e}",
                            l.line(),
                            l.column()
                        ),
                        None => format!("invalid YAML: {e}"),
                    });
                }
            }
            None
        }
        "toml" => {
            let text = match std::str::from_utf8(data) {
                Ok(t) => t,
                Err(e) => return Some(format!("invalid TOML: not UTF-8 ({e})")),
            };
            text.parse::<toml::Table>().err().map(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                match line {
                    Some(l) => format!("invalid TOML at line {l}: {}", e.message()),
                    None => format!("invalid TOML: {}", e.message()),
                }
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::validate_syntax;

    #[test]
    fn reports_line_of_syntax_errors() {
        assert_eq!(validate_syntax("a.json", br#"{"a": 1}"#), None);
        let e = validate_syntax("a.json", b"{\n\"a\": 1,\n}").expect("invalid");
        assert!(e.contains("line 3"), "{e}");
        assert_eq!(validate_syntax("a.yaml", b"a: 1\nb: [1, 2]\n"), None);
        let e = validate_syntax("a.yml", b"a: 1\nb: [1, 2\nc: 3\n").expect("invalid");
        assert!(e.starts_with("invalid YAML"), "{e}");
        assert_eq!(validate_syntax("a.toml", b"[x]\ny = 1\n"), None);
        let e = validate_syntax("a.toml", b"[x]\ny = 1\nz = \n").expect("invalid");
        assert!(e.contains("line 3"), "{e}");
        assert_eq!(validate_syntax("a.txt", b"{{{"), None);
    }
}
