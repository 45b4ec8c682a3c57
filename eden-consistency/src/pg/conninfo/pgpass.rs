//! The libpq password file (`PGPASSFILE`, else `~/.pgpass`).

use std::path::Path;

/// Looks up a password in a libpq password file: lines `host:port:database:user:password`,
/// `*` matching anything, `\:` and `\\` escapes, `#` comments. A file that is not a plain
/// file, or that the group or others may access, is ignored with a warning, like libpq.
pub fn password_from_file(
    path: &Path,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!("password file \"{}\" is not a plain file", path.display());
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less, so it is ignored",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    pgpass_lookup(&text, host, port, dbname, user)
}

/// The matching logic of [`password_from_file`] on the file's text.
pub fn pgpass_lookup(
    text: &str,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = pgpass_match(line, host)
            .and_then(|r| pgpass_match(r, port))
            .and_then(|r| pgpass_match(r, dbname))
            .and_then(|r| pgpass_match(r, user))
        else {
            continue;
        };
        // The password: up to the first unescaped ':', de-escaped.
        let mut pw = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                ':' => break,
                '\\' => match chars.next() {
                    Some(n) => pw.push(n),
                    None => pw.push('\\'),
                },
                c => pw.push(c),
            }
        }
        return Some(pw);
    }
    None
}

/// libpq's `pwdfMatchesString`: does the next field of `buf` match `token`? Returns the
/// rest of the line after the field's `:`.
fn pgpass_match<'a>(buf: &'a str, token: &str) -> Option<&'a str> {
    if let Some(rest) = buf.strip_prefix("*:") {
        return Some(rest);
    }
    let b = buf.as_bytes();
    let t = token.as_bytes();
    let (mut i, mut j) = (0, 0);
    let mut bslash = false;
    while i < b.len() {
        if b[i] == b'\\' && !bslash {
            i += 1;
            bslash = true;
            if i >= b.len() {
                return None;
            }
        }
        if b[i] == b':' && j == t.len() && !bslash {
            return buf.get(i + 1..);
        }
        bslash = false;
        if j == t.len() {
            return None;
        }
        if b[i] == t[j] {
            i += 1;
            j += 1;
        } else {
            return None;
        }
    }
    None
}
