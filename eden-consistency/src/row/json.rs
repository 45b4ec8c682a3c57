//! Canonical JSON: the text of a `json`/`jsonb` document such that two documents are equal
//! as `jsonb` exactly when their canonical texts are equal (the form of [`crate::row::value::Value::Json`]).

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::row::decimal::normalize_json_number;

/// Canonical JSON text of a `json`/`jsonb` document: compact, object keys unique (the last
/// duplicate wins, as in `jsonb`) and in `jsonb`'s order (shorter keys first, then bytewise),
/// strings re-escaped minimally (as `jsonb` prints them), numbers as normalized decimals
/// without exponent (`1.0` and `1E0` become `1`, `-0` becomes `0`). Two documents are equal
/// as `jsonb` exactly when their canonical texts are equal.
///
/// `jsonb` output (already in key order, unique keys) takes a single-pass path without
/// building a tree, at any nesting depth; other documents (e.g. `json` with keys out of
/// order, or keys with escapes) are parsed into a tree, which refuses nesting deeper than 256.
///
/// ```
/// use eden_consistency::__private::json::canonical_json;
/// assert_eq!(canonical_json(r#"{"bb": [1.50, null], "a": "x\u0041", "c": 1, "c": 2}"#).unwrap(),
///            r#"{"a":"xA","c":2,"bb":[1.5,null]}"#);
/// assert_eq!(canonical_json("1e3").unwrap(), "1000");
/// ```
pub fn canonical_json(text: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(text.len());
    canonical_json_into(text, &mut out)?;
    String::from_utf8(out).map_err(|_| "invalid JSON: not UTF-8".to_string())
}

/// Appends the canonical JSON text of `text` (see [`canonical_json`]) to `out`.
pub fn canonical_json_into(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let mut fast = FastJson {
        s: text.as_bytes(),
        pos: 0,
        out,
    };
    if fast.value().is_some() {
        fast.ws();
        if fast.pos == fast.s.len() {
            return Ok(());
        }
    }
    out.truncate(start);
    let mut p = JsonParser {
        s: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("invalid JSON: unexpected text at byte {}", p.pos));
    }
    let mut s = String::with_capacity(text.len());
    v.write(&mut s);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// `jsonb`'s order of object keys: shorter first, then bytewise.
pub fn json_key_order(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Sorts object entries by [`json_key_order`], keeping the last of duplicate keys.
fn sort_object(mut entries: Vec<(String, Json)>) -> Vec<(String, Json)> {
    entries.sort_by(|a, b| json_key_order(a.0.as_bytes(), b.0.as_bytes())); // stable
    let mut out: Vec<(String, Json)> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(last) if last.0 == e.0 => *last = e,
            _ => out.push(e),
        }
    }
    out
}

/// Single-pass canonicalization of JSON that is already in canonical key order (as `jsonb`
/// prints it); gives up (`None`) on anything else, for the tree path to handle.
struct FastJson<'a> {
    s: &'a [u8],
    pos: usize,
    out: &'a mut Vec<u8>,
}

impl FastJson<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    /// A string without escapes or control characters: its bytes between the quotes.
    fn plain_string(&mut self) -> Option<(usize, usize)> {
        if self.s.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match *self.s.get(i)? {
                b'"' => break,
                b'\\' => return None,
                b if b < 0x20 => return None,
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        Some((start, i))
    }

    /// One complete JSON value, iteratively (any nesting depth).
    fn value(&mut self) -> Option<()> {
        // Open containers: `Some(previous key)` for objects, `None` for arrays.
        let mut stack: Vec<Option<Option<(usize, usize)>>> = Vec::new();
        loop {
            // Parse one value (a scalar, or the start of a container).
            self.ws();
            match *self.s.get(self.pos)? {
                b'{' => {
                    self.pos += 1;
                    self.out.push(b'{');
                    self.ws();
                    if self.s.get(self.pos) == Some(&b'}') {
                        self.pos += 1;
                        self.out.push(b'}');
                    } else {
                        stack.push(Some(None));
                        self.key(&mut stack)?;
                        continue;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    self.out.push(b'[');
                    self.ws();
                    if self.s.get(self.pos) == Some(&b']') {
                        self.pos += 1;
                        self.out.push(b']');
                    } else {
                        stack.push(None);
                        continue;
                    }
                }
                b'"' => match self.plain_string() {
                    Some((a, b)) => {
                        self.out.push(b'"');
                        self.out.extend_from_slice(&self.s[a..b]);
                        self.out.push(b'"');
                    }
                    None => {
                        // Escapes: decode and re-escape canonically.
                        let mut p = JsonParser {
                            s: self.s,
                            pos: self.pos,
                            depth: 0,
                        };
                        let text = p.string().ok()?;
                        self.pos = p.pos;
                        let mut esc = String::with_capacity(text.len() + 2);
                        write_json_string(&mut esc, &text);
                        self.out.extend_from_slice(esc.as_bytes());
                    }
                },
                b't' => self.lit(b"true")?,
                b'f' => self.lit(b"false")?,
                b'n' => self.lit(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(top) = stack.last() else {
                    return Some(());
                };
                let is_obj = top.is_some();
                self.ws();
                match *self.s.get(self.pos)? {
                    b',' => {
                        self.pos += 1;
                        self.out.push(b',');
                        if is_obj {
                            self.key(&mut stack)?;
                        }
                        break;
                    }
                    b'}' if is_obj => {
                        self.pos += 1;
                        self.out.push(b'}');
                        stack.pop();
                    }
                    b']' if !is_obj => {
                        self.pos += 1;
                        self.out.push(b']');
                        stack.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// An object key and its colon, checking it comes after the previous key.
    fn key(&mut self, stack: &mut [Option<Option<(usize, usize)>>]) -> Option<()> {
        self.ws();
        let (a, b) = self.plain_string()?;
        let prev = stack.last_mut()?.as_mut()?;
        if let Some((pa, pb)) = *prev
            && json_key_order(&self.s[pa..pb], &self.s[a..b]) != Ordering::Less
        {
            return None;
        }
        *prev = Some((a, b));
        self.out.push(b'"');
        self.out.extend_from_slice(&self.s[a..b]);
        self.out.extend_from_slice(b"\":");
        self.ws();
        if self.s.get(self.pos) != Some(&b':') {
            return None;
        }
        self.pos += 1;
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.pos) {
            self.pos += 1;
        }
        let t = &self.s[start..self.pos];
        let digits = t.strip_prefix(b"-").unwrap_or(t);
        let simple = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || (digits.len() == 1 && t.len() == 1));
        if simple {
            self.out.extend_from_slice(t);
        } else {
            let n = normalize_json_number(std::str::from_utf8(t).ok()?)?;
            self.out.extend_from_slice(n.as_bytes());
        }
        Some(())
    }

    fn lit(&mut self, l: &[u8]) -> Option<()> {
        if self.s[self.pos..].starts_with(l) {
            self.pos += l.len();
            self.out.extend_from_slice(l);
            Some(())
        } else {
            None
        }
    }
}

enum Json {
    Lit(&'static str),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    /// Entries sorted by [`json_key_order`], keys unique.
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Lit(l) => out.push_str(l),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => write_json_string(out, s),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("invalid JSON: {what} at byte {}", self.pos)
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.pos) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                let mut map: Vec<(String, Json)> = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Json::Obj(sort_object(map)));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.pos) != Some(&b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.pos += 1;
                    let v = self.value()?;
                    map.push((k, v));
                    self.ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            self.depth -= 1;
                            return Ok(Json::Obj(sort_object(map)));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.enter()?;
                self.pos += 1;
                let mut arr = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Json::Arr(arr));
                }
                loop {
                    arr.push(self.value()?);
                    self.ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            self.depth -= 1;
                            return Ok(Json::Arr(arr));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true"),
            Some(b'f') => self.lit("false"),
            Some(b'n') => self.lit("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > 256 {
            return Err(self.err("nesting too deep"));
        }
        Ok(())
    }

    fn lit(&mut self, l: &'static str) -> Result<Json, String> {
        if self.s[self.pos..].starts_with(l.as_bytes()) {
            self.pos += l.len();
            Ok(Json::Lit(l))
        } else {
            Err(self.err("unexpected word"))
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.pos) {
            self.pos += 1;
        }
        let t =
            std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("bad number"))?;
        normalize_json_number(t)
            .map(Json::Num)
            .ok_or_else(|| self.err("bad number"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(self.err("bad escape"));
                    };
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{08}',
                        b'f' => '\u{0c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi)
                                && self.s.get(self.pos..self.pos + 2) == Some(b"\\u")
                            {
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("bad surrogate pair"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("bad \\u escape"))?
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8 in string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_canonical(text: &str) -> Result<String, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        assert_eq!(p.pos, p.s.len());
        let mut s = String::new();
        v.write(&mut s);
        Ok(s)
    }

    #[test]
    fn json_canonical_forms() {
        let c = |t: &str| canonical_json(t).unwrap();
        assert_eq!(c(r#"{"b":1,"a":2}"#), c(r#"{ "a" : 2 , "b" : 1 }"#));
        assert_eq!(c(r#"{"aa":1,"b":2}"#), r#"{"b":2,"aa":1}"#);
        assert_eq!(
            c("[1.0, 1e0, 10E-1, -0, 0.0, 100e-2, 0.001e3]"),
            "[1,1,1,0,0,1,1]"
        );
        assert_eq!(c("-12.3400e1"), "-123.4");
        assert_eq!(c("1e-3"), "0.001");
        assert_eq!(c(r#""\u00e9\n\/""#), "\"é\\n/\"");
        assert_eq!(c(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(c(r#"{"a":1,"a":{"x":1}}"#), r#"{"a":{"x":1}}"#);
        assert_eq!(c("null"), "null");
        assert_ne!(c("null"), c(r#""null""#));
        assert!(canonical_json("[1,]").is_err());
        assert!(canonical_json("01").is_err() || c("01") == "1");
        assert!(canonical_json("{\"a\" 1}").is_err());
        assert!(canonical_json("nul").is_err());
        assert!(canonical_json("\"abc").is_err());
        let deep = "[{\"a\":".repeat(5000) + "1" + &"}]".repeat(5000);
        assert_eq!(canonical_json(&deep).unwrap(), deep);
        let deep_unordered = "[{\"b\":1,\"a\":".repeat(5000) + "1" + &"}]".repeat(5000);
        assert!(canonical_json(&deep_unordered).is_err());
        assert!(canonical_json(&("[".repeat(5000) + "]")).is_err());
    }

    mod props {
        use super::super::*;
        use super::slow_canonical;
        use crate::row::decimal::{normalize_decimal, normalize_json_number};
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum J {
            Null,
            Bool(bool),
            Num(i64, u8),
            Str(String),
            Arr(Vec<J>),
            Obj(Vec<(String, J)>),
        }

        fn j() -> impl Strategy<Value = J> {
            let leaf = prop_oneof![
                Just(J::Null),
                any::<bool>().prop_map(J::Bool),
                (any::<i64>(), 0u8..6).prop_map(|(n, s)| J::Num(n, s)),
                "[a-c\"\\\\ é\n\u{1}]{0,4}".prop_map(J::Str),
            ];
            leaf.prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
                    prop::collection::vec(("[a-c]{0,3}", inner), 0..5).prop_map(J::Obj),
                ]
            })
        }

        /// Renders with the given whitespace, number style and key order.
        fn render(v: &J, ws: &str, alt_num: bool, reverse: bool, out: &mut String) {
            match v {
                J::Null => out.push_str("null"),
                J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                J::Num(n, scale) => {
                    if alt_num {
                        // Same value, other spelling: trailing zeros or an exponent.
                        if n % 2 == 0 {
                            out.push_str(&format!("{n}.{}", "0".repeat(*scale as usize + 1)));
                        } else {
                            out.push_str(&format!("{n}0e-1"));
                        }
                    } else {
                        out.push_str(&n.to_string());
                    }
                }
                J::Str(s) => {
                    out.push('"');
                    for c in s.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            '\n' => out.push_str("\\n"),
                            c if (c as u32) < 0x20 || (alt_num && c == 'a') => {
                                out.push_str(&format!("\\u{:04x}", c as u32))
                            }
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
                J::Arr(a) => {
                    out.push('[');
                    for (i, x) in a.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                            out.push_str(ws);
                        }
                        render(x, ws, alt_num, reverse, out);
                    }
                    out.push(']');
                }
                J::Obj(o) => {
                    // Unique keys, last wins: keep the last occurrence of each.
                    let mut entries: Vec<&(String, J)> = Vec::new();
                    for e in o {
                        entries.retain(|x| x.0 != e.0);
                        entries.push(e);
                    }
                    if reverse {
                        entries.reverse();
                    }
                    out.push('{');
                    for (i, (k, x)) in entries.iter().map(|e| (&e.0, &e.1)).enumerate() {
                        if i > 0 {
                            out.push(',');
                            out.push_str(ws);
                        }
                        out.push_str(&format!("\"{k}\":{ws}"));
                        render(x, ws, alt_num, reverse, out);
                    }
                    out.push('}');
                }
            }
        }

        proptest! {
            #[test]
            fn canonical_json_ignores_spelling(v in j()) {
                let mut a = String::new();
                render(&v, "", false, false, &mut a);
                let mut b = String::new();
                render(&v, " \n ", true, true, &mut b);
                let ca = canonical_json(&a).unwrap();
                prop_assert_eq!(&ca, &canonical_json(&b).unwrap());
                prop_assert_eq!(&ca, &slow_canonical(&a).unwrap());
                prop_assert_eq!(&ca, &slow_canonical(&b).unwrap());
                // Canonical text is a fixed point.
                prop_assert_eq!(&canonical_json(&ca).unwrap(), &ca);
            }

            #[test]
            fn json_number_normalization_matches_decimal(int in "-?[0-9]{1,12}", frac in "[0-9]{0,8}", exp in -30i64..30) {
                let text = if frac.is_empty() { format!("{int}e{exp}") } else { format!("{int}.{frac}e{exp}") };
                let n = normalize_json_number(&text).unwrap();
                // Shifting the point back by `exp` gives the plain decimal of the input.
                let plain = if frac.is_empty() { int.clone() } else { format!("{int}.{frac}") };
                let back = normalize_json_number(&format!("{n}e{}", -exp)).unwrap();
                prop_assert_eq!(back, normalize_decimal(&plain));
                prop_assert_eq!(normalize_json_number(&n).unwrap(), n.clone());
            }
        }
    }
}
