//! Per-key canonical digests of cache values.
//!
//! A key's content is serialised canonically and hashed with SHA-1 (the first 64 bits are
//! kept): a type tag, then length-prefixed items (`<len>:<bytes>`):
//!
//! | type | serialisation |
//! |---|---|
//! | string | `s` + item(value) |
//! | hash | `h` + count `:` + sorted(item(field) item(value)) |
//! | list | `l` + count `:` + items in order |
//! | set | `t` + count `:` + sorted(item(member)) |
//! | sorted set | `z` + count `:` + sorted(item(member) item(score as the server prints it)) |
//! | stream | `x` + count `:` + per entry in id order: item(id) fieldcount `:` item(field) item(value)… |
//! | anything else (module types) | `o` + item(type name) + item(`DUMP` payload) |
//!
//! Sorting is over the encoded items, bytewise. The internal encoding (listpack,
//! hashtable, intset, skiplist…) never enters the digest, so equal content compares equal
//! whatever the servers' `*-max-listpack-*` settings.
//!
//! Where the server allows scripts, the digest is computed by a read-only Lua script next to
//! the data, so values never cross the network: one script call takes the keys of one
//! `SCAN` step and returns each key's type, digest and absolute expiry. Values larger than the
//! "big" limits (default 1024 elements, 1 MiB strings, which the script reads but never
//! sends) and servers where scripting is
//! refused (`NOSCRIPT`/ACL) or whose Lua string order is not bytewise (a non-C
//! `LC_COLLATE`) fall back to the same digest computed here, reading the value in pages
//! (`GETRANGE`, `HSCAN`, `SSCAN`, `ZSCAN`, `LRANGE`, `XRANGE`). Both sides compute the
//! same function, so regions may mix the two.
//!
//! Expiry is the absolute time in milliseconds: `PEXPIRETIME` on Redis 7 and later, else
//! the server's `TIME` plus `PTTL`.

use std::collections::BTreeMap;

use redis::Value;
use redis::aio::MultiplexedConnection;

/// Elements above which a collection is digested here, in pages.
pub const DEFAULT_BIG_ELEMENTS: u64 = 1024;
/// Bytes above which a string is digested here, in pages.
pub const DEFAULT_BIG_BYTES: u64 = 1 << 20;

/// What one key holds, as compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rec {
    /// Type tag: `s` string, `h` hash, `l` list, `t` set, `z` sorted set, `x` stream, `o` other.
    pub kind: u8,
    /// First 64 bits of the SHA-1 of the canonical serialisation.
    pub digest: u64,
    /// Absolute expiry in Unix milliseconds, or -1 for none.
    pub expire_ms: i64,
}

impl Rec {
    /// The Redis type name for the tag.
    pub fn type_name(&self) -> &'static str {
        type_name(self.kind)
    }
}

/// The Redis type name for a tag.
pub fn type_name(kind: u8) -> &'static str {
    match kind {
        b's' => "string",
        b'h' => "hash",
        b'l' => "list",
        b't' => "set",
        b'z' => "zset",
        b'x' => "stream",
        _ => "other",
    }
}

const SCRIPT_BODY: &str = r#"
local big = tonumber(ARGV[2])
local bigbytes = tonumber(ARGV[3])
local pet = ARGV[4] == '1'
local now = 0
if not pet then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function enc(s) return #s .. ':' .. s end
local function rec(k)
  -- Strings (most keys) first: one GET instead of TYPE + STRLEN + GET.
  local v = redis.pcall('GET', k)
  local t
  if type(v) == 'string' then
    t = 'string'
  elseif type(v) == 'table' and v['err'] then
    t = redis.call('TYPE', k)['ok']
  else
    return ''
  end
  local e
  if pet then
    e = redis.call('PEXPIRETIME', k)
  else
    e = redis.call('PTTL', k)
    if e >= 0 then e = now + e end
  end
  if e == -2 then return '' end
  local es = '|' .. string.format('%d', e)
  local body
  if t == 'string' then
    if #v > bigbytes then return 'sbig' .. es end
    body = 's' .. enc(v)
  elseif t == 'hash' then
    if redis.call('HLEN', k) > big then return 'hbig' .. es end
    local a = redis.call('HGETALL', k)
    local p = {}
    for i = 1, #a, 2 do p[#p + 1] = enc(a[i]) .. enc(a[i + 1]) end
    table.sort(p)
    body = 'h' .. #p .. ':' .. table.concat(p)
  elseif t == 'list' then
    if redis.call('LLEN', k) > big then return 'lbig' .. es end
    local a = redis.call('LRANGE', k, 0, -1)
    local p = {}
    for i = 1, #a do p[i] = enc(a[i]) end
    body = 'l' .. #a .. ':' .. table.concat(p)
  elseif t == 'set' then
    if redis.call('SCARD', k) > big then return 'tbig' .. es end
    local a = redis.call('SMEMBERS', k)
    local p = {}
    for i = 1, #a do p[i] = enc(a[i]) end
    table.sort(p)
    body = 't' .. #a .. ':' .. table.concat(p)
  elseif t == 'zset' then
    if redis.call('ZCARD', k) > big then return 'zbig' .. es end
    local a = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
    local p = {}
    for i = 1, #a, 2 do p[#p + 1] = enc(a[i]) .. enc(a[i + 1]) end
    table.sort(p)
    body = 'z' .. #p .. ':' .. table.concat(p)
  elseif t == 'stream' then
    if redis.call('XLEN', k) > big then return 'xbig' .. es end
    local a = redis.call('XRANGE', k, '-', '+')
    local p = {}
    for i = 1, #a do
      local f = a[i][2]
      local q = {enc(a[i][1]), #f / 2, ':'}
      for j = 1, #f do q[#q + 1] = enc(f[j]) end
      p[i] = table.concat(q)
    end
    body = 'x' .. #a .. ':' .. table.concat(p)
  else
    return 'obig' .. es
  end
  return string.sub(body, 1, 1) .. string.sub(redis.sha1hex(body), 1, 16) .. es
end
local out = {}
if ARGV[1] == 'scan' then
  local r
  if ARGV[7] ~= '' then
    r = redis.call('SCAN', ARGV[5], 'MATCH', ARGV[7], 'COUNT', ARGV[6])
  else
    r = redis.call('SCAN', ARGV[5], 'COUNT', ARGV[6])
  end
  out[1] = r[1]
  for _, k in ipairs(r[2]) do
    local x = rec(k)
    if x ~= '' then out[#out + 1] = k; out[#out + 1] = x end
  end
elseif ARGV[1] == 'probe' then
  if ('B' < 'a') and ('\200' > 'z') and ('a\0b' < 'a\0c') then return 1 else return 0 end
else
  for i = 5, #ARGV do out[#out + 1] = rec(ARGV[i]) end
end
return out
"#;

/// The read-only digest script for a server (`#!lua` flags on Redis 7 and later so that a
/// cluster node may read its own keys without declaring them).
pub fn digest_script(redis7: bool) -> redis::Script {
    if redis7 {
        redis::Script::new(&format!(
            "#!lua flags=no-writes,allow-cross-slot-keys\n{SCRIPT_BODY}"
        ))
    } else {
        redis::Script::new(SCRIPT_BODY)
    }
}

/// Settings of a digest run on one node.
#[derive(Debug, Clone)]
pub struct DigestCtx {
    /// Elements above which a collection is digested here.
    pub big_elements: u64,
    /// Bytes above which a string is digested here.
    pub big_bytes: u64,
    /// Server has `PEXPIRETIME`.
    pub has_pexpiretime: bool,
    /// Use the server-side script (else everything is computed here).
    pub server_side: bool,
}

/// Parses one record `<tag><16 hex>|<expiry>` (or `<tag>big|<expiry>`); `Ok(None)` for an
/// absent key, `Err(tag, expiry)` for a value to digest here.
fn parse_rec(b: &[u8]) -> std::result::Result<Option<Rec>, (u8, i64)> {
    if b.is_empty() {
        return Ok(None);
    }
    let bar = b.iter().position(|&c| c == b'|').unwrap_or(b.len());
    let expire_ms = std::str::from_utf8(&b[bar + 1..])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(-1);
    let kind = b[0];
    let body = &b[1..bar];
    if body == b"big" {
        return Err((kind, expire_ms));
    }
    let digest = std::str::from_utf8(body)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or(0);
    Ok(Some(Rec {
        kind,
        digest,
        expire_ms,
    }))
}

fn bulk(v: &Value) -> &[u8] {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.as_bytes(),
        _ => &[],
    }
}

/// Asks the server whether its Lua string order is bytewise (`LC_COLLATE` C); `Ok(false)`
/// too when scripting is refused.
pub async fn probe_script(conn: &mut MultiplexedConnection, redis7: bool) -> bool {
    let r: redis::RedisResult<i64> = digest_script(redis7)
        .arg("probe")
        .arg(0)
        .arg(0)
        .arg(0)
        .invoke_async(conn)
        .await;
    matches!(r, Ok(1))
}

/// One `SCAN` step on a node: the next cursor and each key found with its record.
pub async fn scan_step(
    conn: &mut MultiplexedConnection,
    ctx: &DigestCtx,
    script: &redis::Script,
    cursor: u64,
    count: u32,
    pattern: Option<&str>,
) -> redis::RedisResult<(u64, Vec<(Vec<u8>, Rec)>)> {
    let mut out = Vec::new();
    if ctx.server_side {
        let v: Value = script
            .arg("scan")
            .arg(ctx.big_elements)
            .arg(ctx.big_bytes)
            .arg(if ctx.has_pexpiretime { "1" } else { "0" })
            .arg(cursor)
            .arg(count)
            .arg(pattern.unwrap_or(""))
            .invoke_async(conn)
            .await?;
        let Value::Array(items) = v else {
            return Err(protocol("the digest script returned no array"));
        };
        let next = std::str::from_utf8(bulk(items.first().unwrap_or(&Value::Nil)))
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut it = items.into_iter().skip(1);
        while let (Some(k), Some(r)) = (it.next(), it.next()) {
            let key = match k {
                Value::BulkString(b) => b,
                other => bulk(&other).to_vec(),
            };
            match parse_rec(bulk(&r)) {
                Ok(Some(rec)) => out.push((key, rec)),
                Ok(None) => {}
                Err(_) => {
                    if let Some(rec) = client_digest(conn, &key, ctx).await? {
                        out.push((key, rec));
                    }
                }
            }
        }
        out.retain(|(k, _)| !k.starts_with(super::lock::LOCK_PREFIX));
        Ok((next, out))
    } else {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor);
        if let Some(p) = pattern {
            cmd.arg("MATCH").arg(p);
        }
        cmd.arg("COUNT").arg(count);
        let (next, keys): (u64, Vec<Vec<u8>>) = cmd.query_async(conn).await?;
        for key in keys {
            if key.starts_with(super::lock::LOCK_PREFIX) {
                continue;
            }
            if let Some(rec) = client_digest(conn, &key, ctx).await? {
                out.push((key, rec));
            }
        }
        Ok((next, out))
    }
}

/// The records of the given keys on one node (`None` for absent keys).
pub async fn read_keys(
    conn: &mut MultiplexedConnection,
    ctx: &DigestCtx,
    script: &redis::Script,
    keys: &[&[u8]],
) -> redis::RedisResult<Vec<Option<Rec>>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        if ctx.server_side {
            let mut inv = script.arg("keys");
            inv.arg(ctx.big_elements)
                .arg(ctx.big_bytes)
                .arg(if ctx.has_pexpiretime { "1" } else { "0" });
            for k in chunk {
                inv.arg(*k);
            }
            let v: Vec<Vec<u8>> = inv.invoke_async(conn).await?;
            for (k, r) in chunk.iter().zip(v) {
                match parse_rec(&r) {
                    Ok(x) => out.push(x),
                    Err(_) => out.push(client_digest(conn, k, ctx).await?),
                }
            }
        } else {
            for k in chunk {
                out.push(client_digest(conn, k, ctx).await?);
            }
        }
    }
    Ok(out)
}

fn protocol(msg: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "eden",
        msg.to_string(),
    ))
}

fn enc(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn finish(h: &sha1_smol::Sha1) -> u64 {
    let d = h.digest().bytes();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The digest of canonical content computed here (the Lua script's function).
pub fn digest_bytes(body: &[u8]) -> u64 {
    let mut h = sha1_smol::Sha1::new();
    h.update(body);
    finish(&h)
}

/// Type and absolute expiry of a key, without its content (`None` when absent).
pub async fn type_and_expiry(
    conn: &mut MultiplexedConnection,
    key: &[u8],
    has_pexpiretime: bool,
) -> redis::RedisResult<Option<(String, i64)>> {
    let (t, e): (String, i64) = if has_pexpiretime {
        redis::pipe()
            .cmd("TYPE")
            .arg(key)
            .cmd("PEXPIRETIME")
            .arg(key)
            .query_async(conn)
            .await?
    } else {
        let (t, p, (sec, usec)): (String, i64, (i64, i64)) = redis::pipe()
            .cmd("TYPE")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .cmd("TIME")
            .query_async(conn)
            .await?;
        let now = sec * 1000 + usec / 1000;
        (t, if p >= 0 { now + p } else { p })
    };
    if t == "none" || e == -2 {
        return Ok(None);
    }
    Ok(Some((t, e)))
}

/// The digest of one key computed here, reading its value in pages.
pub async fn client_digest(
    conn: &mut MultiplexedConnection,
    key: &[u8],
    ctx: &DigestCtx,
) -> redis::RedisResult<Option<Rec>> {
    let Some((t, expire_ms)) = type_and_expiry(conn, key, ctx.has_pexpiretime).await? else {
        return Ok(None);
    };
    const PAGE: usize = 1000;
    let mut body = Vec::new();
    let mut h = sha1_smol::Sha1::new();
    let kind = match t.as_str() {
        "string" => {
            let len: usize = redis::cmd("STRLEN").arg(key).query_async(conn).await?;
            h.update(b"s");
            h.update(format!("{len}:").as_bytes());
            let mut at = 0usize;
            const CHUNK: usize = 512 * 1024;
            while at < len {
                let part: Vec<u8> = redis::cmd("GETRANGE")
                    .arg(key)
                    .arg(at)
                    .arg(at + CHUNK - 1)
                    .query_async(conn)
                    .await?;
                if part.is_empty() {
                    break;
                }
                at += part.len();
                h.update(&part);
            }
            b's'
        }
        "list" => {
            let mut items: Vec<Vec<u8>> = Vec::new();
            let mut start = 0usize;
            loop {
                let page: Vec<Vec<u8>> = redis::cmd("LRANGE")
                    .arg(key)
                    .arg(start)
                    .arg(start + PAGE - 1)
                    .query_async(conn)
                    .await?;
                let n = page.len();
                items.extend(page);
                start += n;
                if n < PAGE {
                    break;
                }
            }
            body.extend_from_slice(format!("l{}:", items.len()).as_bytes());
            for e in &items {
                enc(&mut body, e);
            }
            h.update(&body);
            b'l'
        }
        "hash" | "zset" | "set" => {
            let (scan, tag) = match t.as_str() {
                "hash" => ("HSCAN", b'h'),
                "zset" => ("ZSCAN", b'z'),
                _ => ("SSCAN", b't'),
            };
            // SCAN may return an element twice: a map removes the repeats.
            let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut cursor = 0u64;
            loop {
                let (next, page): (u64, Vec<Vec<u8>>) = redis::cmd(scan)
                    .arg(key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(conn)
                    .await?;
                if tag == b't' {
                    for m in page {
                        map.insert(m, Vec::new());
                    }
                } else {
                    let mut it = page.into_iter();
                    while let (Some(f), Some(v)) = (it.next(), it.next()) {
                        map.insert(f, v);
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            let mut parts: Vec<Vec<u8>> = map
                .into_iter()
                .map(|(f, v)| {
                    let mut p = Vec::with_capacity(f.len() + v.len() + 12);
                    enc(&mut p, &f);
                    if tag != b't' {
                        enc(&mut p, &v);
                    }
                    p
                })
                .collect();
            parts.sort_unstable();
            body.push(tag);
            body.extend_from_slice(format!("{}:", parts.len()).as_bytes());
            h.update(&body);
            for p in &parts {
                h.update(p);
            }
            tag
        }
        "stream" => {
            let mut entries: Vec<Vec<u8>> = Vec::new();
            let mut start = "-".to_string();
            loop {
                let page: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                    .arg(key)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(conn)
                    .await?;
                let n = page.len();
                for (id, fields) in page {
                    let mut p = Vec::new();
                    enc(&mut p, id.as_bytes());
                    p.extend_from_slice(format!("{}:", fields.len() / 2).as_bytes());
                    for f in &fields {
                        enc(&mut p, f);
                    }
                    entries.push(p);
                    start = format!("({id}");
                }
                if n < PAGE {
                    break;
                }
            }
            body.extend_from_slice(format!("x{}:", entries.len()).as_bytes());
            h.update(&body);
            for e in &entries {
                h.update(e);
            }
            b'x'
        }
        other => {
            let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(key).query_async(conn).await?;
            body.push(b'o');
            enc(&mut body, other.as_bytes());
            enc(&mut body, &dump.unwrap_or_default());
            h.update(&body);
            b'o'
        }
    };
    Ok(Some(Rec {
        kind,
        digest: finish(&h),
        expire_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        assert_eq!(
            parse_rec(b"s00000000000000ff|-1"),
            Ok(Some(Rec {
                kind: b's',
                digest: 255,
                expire_ms: -1
            }))
        );
        assert_eq!(parse_rec(b"hbig|123"), Err((b'h', 123)));
        assert_eq!(parse_rec(b""), Ok(None));
    }
}
