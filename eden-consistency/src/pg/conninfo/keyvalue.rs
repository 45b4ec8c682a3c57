//! libpq's `key=value` conninfo strings.

use super::*;

impl ConnParams {
    /// Parses libpq's `key=value key2='quoted value'` form (`\'` and `\\` escapes).
    pub fn parse_keyvalue(conninfo: &str) -> Result<ConnParams, String> {
        let mut p = ConnParams::default();
        // With a password around, don't echo text that may be a piece of it.
        let hide = conninfo.contains("password") || conninfo.contains('@');
        let chars: Vec<char> = conninfo.chars().collect();
        let mut i = 0;
        let n = chars.len();
        loop {
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            if i >= n {
                break;
            }
            let start = i;
            while i < n && !chars[i].is_whitespace() && chars[i] != '=' {
                i += 1;
            }
            let key: String = chars[start..i].iter().collect();
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            if i >= n || chars[i] != '=' {
                return Err(format!(
                    "missing \"=\" after {} in the connection string",
                    shown_key(&key, hide)
                ));
            }
            i += 1;
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < n && chars[i] == '\'' {
                i += 1;
                let mut closed = false;
                while i < n {
                    match chars[i] {
                        '\\' if i + 1 < n => {
                            value.push(chars[i + 1]);
                            i += 2;
                        }
                        '\'' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        c => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    return Err(format!(
                        "unterminated quoted value of {} in the connection string",
                        shown_key(&key, hide)
                    ));
                }
            } else {
                while i < n && !chars[i].is_whitespace() {
                    if chars[i] == '\\' && i + 1 < n {
                        value.push(chars[i + 1]);
                        i += 2;
                    } else {
                        value.push(chars[i]);
                        i += 1;
                    }
                }
            }
            if hide && !is_listed_key(&key) {
                return Err(format!(
                    "invalid connection option {}",
                    shown_key(&key, hide)
                ));
            }
            p.set(&key, value)?;
        }
        Ok(p)
    }
}
