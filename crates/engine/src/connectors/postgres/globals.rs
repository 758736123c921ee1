//! Replaying `pg_dumpall --globals-only` into a server that is not the one dumped. The dump
//! re-creates every role with its attributes and password, the superuser included: replayed
//! as is into a new server, it would give the role this restore connects as the source's
//! password (the next connection is refused) and reset the passwords of roles the target
//! already has. So the connecting role's `ALTER ROLE ... WITH` is skipped, existing roles keep
//! their passwords unless asked otherwise, and `CREATE ROLE` of an existing role is skipped
//! rather than left to fail.

use std::collections::BTreeSet;

/// What the replay left out, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The connecting role, whose attributes and password were kept.
    pub connecting_role: Option<String>,
    /// Roles that already existed and kept their passwords.
    pub kept_passwords: Vec<String>,
    /// Roles that already existed, so were not created again.
    pub existing: Vec<String>,
}

/// Splits SQL as psql would read it into pieces that concatenate back to the input:
/// statements up to their `;` (quotes respected), `--` comments and backslash meta-commands up
/// to the end of their line, and the whitespace between.
fn pieces(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let rest = &sql[start..];
        let len = if rest.starts_with(|c: char| c.is_whitespace()) {
            rest.find(|c: char| !c.is_whitespace())
                .unwrap_or(rest.len())
        } else if rest.starts_with("--") || rest.starts_with('\\') {
            rest.find('\n').map_or(rest.len(), |i| i + 1)
        } else {
            statement_len(rest.as_bytes())
        };
        out.push(&sql[start..start + len]);
        start += len;
    }
    out
}

/// The length of the statement at the start of `s`, through its `;` (or to the end).
fn statement_len(s: &[u8]) -> usize {
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match quote {
            Some(q) if c == q => {
                // A doubled quote is an escaped one.
                if s.get(i + 1) == Some(&q) {
                    i += 1;
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b';' => return i + 1,
            None => {}
        }
        i += 1;
    }
    s.len()
}

/// `ALTER ROLE name ...` / `CREATE ROLE name;`: the verb and the role (unquoted), and the rest.
fn role_statement(stmt: &str) -> Option<(&'static str, String, &str)> {
    let (verb, rest) = if let Some(r) = stmt.strip_prefix("CREATE ROLE ") {
        ("CREATE", r)
    } else if let Some(r) = stmt.strip_prefix("ALTER ROLE ") {
        ("ALTER", r)
    } else {
        return None;
    };
    let (name, tail) = identifier(rest)?;
    Some((verb, name, tail))
}

/// A bare or double-quoted identifier at the start of `s`, and what follows it.
fn identifier(s: &str) -> Option<(String, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|&(_, n)| n) == Some('"') {
                    chars.next();
                    name.push('"');
                    continue;
                }
                return Some((name, &quoted[i + 1..]));
            }
            name.push(c);
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .unwrap_or(s.len());
    (end > 0).then(|| (s[..end].to_string(), &s[end..]))
}

/// `stmt` without its ` PASSWORD '...'` clause.
fn without_password(stmt: &str) -> String {
    let Some(at) = stmt.find(" PASSWORD '") else {
        return stmt.to_string();
    };
    let literal = &stmt[at + " PASSWORD ".len()..];
    let len = literal_len(literal.as_bytes());
    format!("{}{}", &stmt[..at], &literal[len..])
}

/// The length of the single-quoted literal at the start of `s`.
fn literal_len(s: &[u8]) -> usize {
    let mut i = 1;
    while i < s.len() {
        if s[i] == b'\'' {
            if s.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    s.len()
}

/// Rewrites a globals dump for a target where `connecting` is the role restoring and
/// `existing` are the roles it already has.
pub fn filter(
    sql: &str,
    connecting: &str,
    existing: &BTreeSet<String>,
    replace_passwords: bool,
) -> (String, Skipped) {
    let mut out = String::with_capacity(sql.len());
    let mut skipped = Skipped::default();
    for piece in pieces(sql) {
        let Some((verb, role, tail)) = role_statement(piece) else {
            out.push_str(piece);
            continue;
        };
        let with = tail.trim_start().starts_with("WITH ");
        if role == connecting && (verb == "CREATE" || with) {
            skipped.connecting_role = Some(role);
            out.push_str("-- skipped by bulwark: the role this restore connects as\n");
            continue;
        }
        if !existing.contains(&role) {
            out.push_str(piece);
            continue;
        }
        if verb == "CREATE" {
            skipped.existing.push(role);
            continue;
        }
        if with && !replace_passwords && piece.contains(" PASSWORD '") {
            out.push_str(&without_password(piece));
            skipped.kept_passwords.push(role);
            continue;
        }
        out.push_str(piece);
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- Roles\n--\n\n\\restrict abc\nSET standard_conforming_strings = on;\n\
        CREATE ROLE app;\n\
        ALTER ROLE app WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:a$b:c';\n\
        CREATE ROLE \"odd \"\"name\"\"; x\";\n\
        ALTER ROLE \"odd \"\"name\"\"; x\" WITH LOGIN PASSWORD 'it''s; secret' VALID UNTIL 'infinity';\n\
        CREATE ROLE postgres;\n\
        ALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:source';\n\
        COMMENT ON ROLE app IS 'ALTER ROLE postgres WITH PASSWORD ''x'';\nsecond line';\n\
        ALTER ROLE postgres SET search_path TO app;\n\
        GRANT pg_read_all_data TO app GRANTED BY postgres;\n";

    #[test]
    fn pieces_concatenate_back_and_respect_quotes() {
        let p = pieces(DUMP);
        assert_eq!(p.concat(), DUMP);
        assert!(p.contains(&"\\restrict abc\n"));
        assert!(p
            .iter()
            .any(|s| s.starts_with("COMMENT ON ROLE app") && s.ends_with("line';")));
    }

    #[test]
    fn the_connecting_role_and_existing_passwords_are_left_alone() {
        let existing: BTreeSet<String> = ["postgres", "odd \"name\"; x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (out, skipped) = filter(DUMP, "postgres", &existing, false);
        assert!(!out.contains("SCRAM-SHA-256$4096:source"), "{out}");
        assert!(!out.contains("CREATE ROLE postgres;"), "{out}");
        assert!(!out.contains("it''s; secret"), "{out}");
        assert!(
            out.contains("ALTER ROLE \"odd \"\"name\"\"; x\" WITH LOGIN VALID UNTIL 'infinity';"),
            "{out}"
        );
        assert!(!out.contains("CREATE ROLE \"odd"), "{out}");
        // New roles come with their passwords; settings, comments and grants stay.
        assert!(out.contains(
            "ALTER ROLE app WITH NOSUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:a$b:c';"
        ));
        assert!(out.contains("ALTER ROLE postgres SET search_path TO app;"));
        assert!(out.contains(
            "COMMENT ON ROLE app IS 'ALTER ROLE postgres WITH PASSWORD ''x'';\nsecond line';"
        ));
        assert_eq!(
            skipped,
            Skipped {
                connecting_role: Some("postgres".into()),
                kept_passwords: vec!["odd \"name\"; x".into()],
                existing: vec!["odd \"name\"; x".into()],
            }
        );
        // Asked to, existing roles get the backup's passwords; the connecting role never.
        let (out, _) = filter(DUMP, "postgres", &existing, true);
        assert!(
            out.contains("it''s; secret") && !out.contains(":source"),
            "{out}"
        );
    }
}
