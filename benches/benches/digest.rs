//! Row encoding + hashing throughput per core, on rows shaped like the benchmark table
//! `vault_secrets (id bigint, tenant_id uuid, path text, secret bytea(32), version int,
//! metadata jsonb, last_updated_at timestamptz)`.
//!
//! Run: `cargo bench -p eden-benches --bench digest`
//!
//! * `values_row_digest`: encode + blake3 of already decoded [`Value`] rows.
//! * `copy_decode_then_digest`: binary `COPY` stream → `Vec<Value>` per row → digest
//!   (the straightforward stream path).
//! * `copy_digest_direct`: binary `COPY` stream → digest without building values
//!   ([`digest_copy_tuple`], the fast path).
//! * `copy_batch_par_digest`: the same, 1 MB pushed at a time, in batches of up to 4096 rows
//!   on rayon's pool (all cores).
//! * `blake3_only`: hashing the already encoded rows (the floor).
//! * `parallel_values_row_digest`: [`digest_rows_parallel`] on all cores.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eden_consistency::__private::copy::{CopyBinaryParser, decode_copy_tuple, digest_copy_tuple};
use eden_consistency::__private::digest::{digest_rows_parallel, encode_row, hash128, row_digest};
use eden_consistency::__private::types::oid;
use eden_consistency::Value;

const ROWS: usize = 10_000;

thread_local! {
    static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Column oids in the canonical (name-sorted) order: id, last_updated_at, metadata, path,
/// secret, tenant_id, version.
const OIDS: [u32; 7] = [
    oid::INT8,
    oid::TIMESTAMPTZ,
    oid::JSONB,
    oid::TEXT,
    oid::BYTEA,
    oid::UUID,
    oid::INT4,
];

/// A deterministic pseudo-random generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A binary COPY stream of `ROWS` rows, as PostgreSQL would send it.
fn copy_stream() -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&[0; 8]);
    for i in 0..ROWS as i64 {
        out.extend_from_slice(&7i16.to_be_bytes());
        field(&mut out, &(i + 1).to_be_bytes());
        let ts = 780_000_000_000_000i64 + (rng.next() % 10_000_000_000_000) as i64;
        field(&mut out, &ts.to_be_bytes());
        let meta = format!(
            "{{\"env\": \"prod\", \"tags\": [\"pci\", \"rotation\"], \"owner\": \"team-{}\", \"rotation_days\": {}}}",
            rng.next() % 100,
            30 + rng.next() % 60
        );
        let mut jb = vec![1u8];
        jb.extend_from_slice(meta.as_bytes());
        field(&mut out, &jb);
        let path = format!(
            "/vault/tenants/{:08x}/secrets/db-password-{}",
            rng.next() as u32,
            i
        );
        field(&mut out, path.as_bytes());
        let secret: Vec<u8> = (0..4).flat_map(|_| rng.next().to_le_bytes()).collect();
        field(&mut out, &secret);
        let uuid: Vec<u8> = (0..2).flat_map(|_| rng.next().to_le_bytes()).collect();
        field(&mut out, &uuid);
        field(&mut out, &((rng.next() % 50) as i32).to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Splits the stream into 8 kB chunks, as the network delivers it.
fn chunks(stream: &[u8]) -> Vec<&[u8]> {
    stream.chunks(8192).collect()
}

fn decode_all(stream: &[u8]) -> Vec<Vec<Value>> {
    let mut p = CopyBinaryParser::new();
    p.push(stream);
    let mut rows = Vec::with_capacity(ROWS);
    while let Some(t) = p.next_tuple().unwrap() {
        rows.push(decode_copy_tuple(&t, &OIDS).unwrap());
    }
    rows
}

fn bench(c: &mut Criterion) {
    let stream = copy_stream();
    let pieces = chunks(&stream);
    let rows = decode_all(&stream);
    let encoded: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| {
            let mut b = Vec::new();
            encode_row(&mut b, r);
            b
        })
        .collect();
    let enc_bytes: usize = encoded.iter().map(Vec::len).sum();
    eprintln!(
        "digest bench: {ROWS} rows, {} wire bytes ({:.0} per row), {} encoded bytes ({:.0} per row)",
        stream.len(),
        stream.len() as f64 / ROWS as f64,
        enc_bytes,
        enc_bytes as f64 / ROWS as f64
    );

    // Sanity: the fast path gives the same digests as the value path.
    {
        let mut p = CopyBinaryParser::new();
        p.push(&stream);
        let mut buf = Vec::new();
        let mut i = 0;
        while let Some(t) = p.next_tuple().unwrap() {
            assert_eq!(
                digest_copy_tuple(&t, &OIDS, &mut buf).unwrap(),
                row_digest(&rows[i])
            );
            i += 1;
        }
    }

    for (name, tp) in [
        ("rows", Throughput::Elements(ROWS as u64)),
        ("wire_bytes", Throughput::Bytes(stream.len() as u64)),
    ] {
        let mut g = c.benchmark_group(format!("digest_{name}"));
        g.throughput(tp);
        g.sample_size(20);
        g.measurement_time(std::time::Duration::from_secs(3));
        g.bench_function("values_row_digest", |b| {
            b.iter(|| {
                for r in &rows {
                    black_box(row_digest(r));
                }
            })
        });
        g.bench_function("copy_decode_then_digest", |b| {
            b.iter(|| {
                let mut p = CopyBinaryParser::new();
                for c in &pieces {
                    p.push(c);
                    while let Some(t) = p.next_tuple().unwrap() {
                        black_box(row_digest(&decode_copy_tuple(&t, &OIDS).unwrap()));
                    }
                }
            })
        });
        g.bench_function("copy_digest_direct", |b| {
            let mut buf = Vec::new();
            b.iter(|| {
                let mut p = CopyBinaryParser::new();
                for c in &pieces {
                    p.push(c);
                    while let Some(t) = p.next_tuple().unwrap() {
                        black_box(digest_copy_tuple(&t, &OIDS, &mut buf).unwrap());
                    }
                }
            })
        });
        g.bench_function("copy_batch_par_digest", |b| {
            b.iter(|| {
                let mut p = CopyBinaryParser::new();
                for group in pieces.chunks(128) {
                    for c in group {
                        p.push(c);
                    }
                    while let Some(batch) = p.next_batch(4096).unwrap() {
                        black_box(batch.par_map(|t| {
                            BUF.with(|buf| {
                                digest_copy_tuple(&t, &OIDS, &mut buf.borrow_mut()).unwrap()
                            })
                        }));
                    }
                }
            })
        });
        g.bench_function("blake3_only", |b| {
            b.iter(|| {
                for e in &encoded {
                    black_box(hash128(e));
                }
            })
        });
        g.bench_function("parallel_values_row_digest", |b| {
            b.iter(|| black_box(digest_rows_parallel(&rows)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
