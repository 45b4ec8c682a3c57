//! Numbers as canonical decimal text: `numeric` values (and JSON numbers) compare and hash
//! by value, so `1.0`, `1.00` and `1e0` have one spelling.

use std::cmp::Ordering;

/// True when `t` is already what [`normalize_decimal`] returns for a number (the common
/// case for decoded values, checked without allocating).
pub(crate) fn is_normalized_decimal(t: &str) -> bool {
    if matches!(t, "NaN" | "Infinity" | "-Infinity" | "0") {
        return true;
    }
    let body = t.strip_prefix('-').unwrap_or(t).as_bytes();
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let int_ok =
        !int.is_empty() && int.iter().all(u8::is_ascii_digit) && (int[0] != b'0' || int.len() == 1);
    let frac_ok = match frac {
        None => int != b"0",
        Some(f) => !f.is_empty() && f.iter().all(u8::is_ascii_digit) && f.last() != Some(&b'0'),
    };
    int_ok && frac_ok
}

/// Normalizes decimal text: strips a leading `+`, leading integer zeros and trailing
/// fractional zeros, applies an exponent (`1.5e3` → `1500`); every zero becomes `0`. `NaN`
/// and the infinities (any case, as PostgreSQL accepts them) become `NaN`, `Infinity`,
/// `-Infinity`; other text without digits passes through.
///
/// ```
/// use eden_consistency::__private::decimal::normalize_decimal;
/// assert_eq!(normalize_decimal("-001.2300"), "-1.23");
/// assert_eq!(normalize_decimal("-0.000"), "0");
/// assert_eq!(normalize_decimal("10"), "10");
/// assert_eq!(normalize_decimal("+1.25E2"), "125");
/// assert_eq!(normalize_decimal("-inf"), "-Infinity");
/// ```
pub fn normalize_decimal(text: &str) -> String {
    let t = text.trim();
    if is_normalized_decimal(t) {
        return t.to_string();
    }
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        let lower = t.to_ascii_lowercase();
        return match lower.as_str() {
            "nan" => "NaN".into(),
            "infinity" | "+infinity" | "inf" | "+inf" => "Infinity".into(),
            "-infinity" | "-inf" => "-Infinity".into(),
            _ => t.to_string(),
        };
    }
    if t.bytes().any(|b| b == b'e' || b == b'E') {
        let body = t.strip_prefix('+').unwrap_or(t);
        if let Some(n) = normalize_json_number(body) {
            return n;
        }
        return t.to_string();
    }
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if int == "0" && frac.is_empty() {
        return "0".into();
    }
    let mut s = String::with_capacity(t.len());
    if neg {
        s.push('-');
    }
    s.push_str(int);
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    s
}

/// Compares two decimal texts exactly (any length), with `NaN` greatest as in PostgreSQL.
pub(crate) fn cmp_decimal(a: &str, b: &str) -> Ordering {
    fn special(s: &str) -> Option<i8> {
        match s {
            "NaN" => Some(2),
            "Infinity" => Some(1),
            "-Infinity" => Some(-1),
            _ => None,
        }
    }
    match (special(a), special(b)) {
        (Some(x), Some(y)) => return x.cmp(&y),
        (Some(x), None) => {
            return if x > 0 {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        (None, Some(y)) => {
            return if y > 0 {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        _ => {}
    }
    let (a, b) = (normalize_decimal(a), normalize_decimal(b));
    let (an, ab) = a
        .strip_prefix('-')
        .map_or((false, a.as_str()), |r| (true, r));
    let (bn, bb) = b
        .strip_prefix('-')
        .map_or((false, b.as_str()), |r| (true, r));
    if an != bn {
        return if an {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let (ai, af) = ab.split_once('.').unwrap_or((ab, ""));
    let (bi, bf) = bb.split_once('.').unwrap_or((bb, ""));
    let mag = ai
        .len()
        .cmp(&bi.len())
        .then_with(|| ai.cmp(bi))
        .then_with(|| {
            let n = af.len().max(bf.len());
            let pa = format!("{af:0<n$}");
            let pb = format!("{bf:0<n$}");
            pa.cmp(&pb)
        });
    if an { mag.reverse() } else { mag }
}

/// A JSON number as normalized decimal text (no exponent, see [`normalize_decimal`]);
/// exponents beyond ±100000 keep a canonical scientific form `d.ddde±n`.
pub(crate) fn normalize_json_number(t: &str) -> Option<String> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // All digits, and the position of the decimal point within them after the exponent.
    let digits: String = format!("{int}{frac}");
    let lead = digits.len() - digits.trim_start_matches('0').len();
    let digits = digits.trim_start_matches('0').trim_end_matches('0');
    if digits.is_empty() {
        return Some("0".into());
    }
    let point = int.len() as i64 - lead as i64 + exp; // digits before the point
    let sign = if neg { "-" } else { "" };
    if !(-100_000..=100_000).contains(&point) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        return Some(format!("{sign}{first}{dot}{rest}e{}", point - 1));
    }
    let mut s = String::from(sign);
    if point <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-point) as usize));
        s.push_str(digits);
    } else if point as usize >= digits.len() {
        s.push_str(digits);
        s.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        s.push_str(&digits[..point as usize]);
        s.push('.');
        s.push_str(&digits[point as usize..]);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(cmp_decimal("1.0", "1.00"), Ordering::Equal);
        assert_eq!(cmp_decimal("-2", "-10"), Ordering::Greater);
        assert_eq!(cmp_decimal("0.5", "0.45"), Ordering::Greater);
        assert_eq!(cmp_decimal("NaN", "1e9"), Ordering::Greater);
        assert_eq!(
            cmp_decimal("123456789012345678901234567890", "9"),
            Ordering::Greater
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn normalize_decimal_is_idempotent(sign in "[-+]?", int in "[0-9]{0,6}", frac in "(\\.[0-9]{0,6})?",
                                               exp in "([eE][-+]?[0-9]{1,2})?") {
                let text = format!("{sign}{int}{frac}{exp}");
                prop_assume!(int.bytes().chain(frac.bytes()).any(|b| b.is_ascii_digit()));
                let n = normalize_decimal(&text);
                prop_assert!(is_normalized_decimal(&n), "{} -> {}", text, n);
                prop_assert_eq!(normalize_decimal(&n), n.clone());
                prop_assert_eq!(cmp_decimal(&text, &n), Ordering::Equal);
                if exp.is_empty() {
                    let f: f64 = text.parse().unwrap_or(0.0);
                    let g: f64 = n.parse().unwrap();
                    prop_assert!((f - g).abs() <= f.abs() * 1e-12);
                }
            }
        }
    }
}
