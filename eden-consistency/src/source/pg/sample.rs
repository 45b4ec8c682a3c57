//! Choosing the chunk bounds from one region's keys (sampling).

use super::*;

impl PgSource<'_> {
    /// Chooses the chunk bounds from this region's keys, for a table of about
    /// `estimated_rows` rows (0: estimated from the catalog), or in `chunks` chunks when
    /// given (tests and tuning).
    pub(crate) async fn sample_bounds_with(
        &mut self,
        estimated_rows: u64,
        chunks: Option<usize>,
    ) -> Result<Chunking> {
        let estimated_rows = if estimated_rows > 0 {
            estimated_rows
        } else {
            let (tuples, bytes) = self.table_size().await?;
            if tuples > 0 { tuples } else { bytes / 100 }
        };
        let spec = self.spec.clone();
        let k0 = &spec.key[0];
        let target = chunks.unwrap_or_else(|| target_chunks(estimated_rows));
        if target <= 1 {
            return Ok(Chunking::default());
        }
        let is_int = matches!(
            types::ColumnType::effective_oid(k0),
            oid::INT2 | oid::INT4 | oid::INT8
        );
        if spec.composite() {
            return self.sample_composite(estimated_rows, target).await;
        }
        // Integer keys: a small sample, interpolated; other keys: one sampled key per chunk.
        let want = if is_int { target.min(2048) } else { target };
        let sample = if estimated_rows <= 4 * want as u64 || estimated_rows < 20_000 {
            String::new()
        } else {
            let pct = (want as f64 * 150.0 / estimated_rows as f64).min(100.0);
            format!(" TABLESAMPLE SYSTEM ({pct:.6})")
        };
        let sql = format!(
            "SELECT {sel}, s.k::text AS kt FROM (SELECT DISTINCT {k0raw} AS k FROM {tbl} t{sample}{w}) s ORDER BY s.k{coll}",
            sel = expr::select_expr(
                &Column {
                    name: "k".into(),
                    ..k0.clone()
                },
                Some("s")
            ),
            k0raw = TableSpec::col_ref(k0),
            tbl = spec.table.quoted(),
            w = spec.where_sql(&[format!("{} IS NOT NULL", TableSpec::col_ref(k0))]),
            coll = if k0.collation.is_some() && !k0.is_array {
                " COLLATE \"C\""
            } else {
                ""
            },
        );
        let rows = self.query("sampling the keys of", &sql, &[]).await?;
        let mut keys: Vec<(Value, String)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let v = decode::decode(r, 0, k0).map_err(|m| Error::Table {
                table: spec.table.to_string(),
                message: m,
            })?;
            let t: String = r.get(1);
            keys.push((v, t));
        }
        if keys.len() < 2 {
            return Ok(Chunking::default());
        }
        let mut ch = Chunking::default();
        if is_int {
            // SYSTEM sampling returns whole pages, i.e. runs of neighbouring keys: take about
            // one quantile per sampled page, add the true minimum and maximum (two index
            // probes), and split every gap linearly.
            let mut ints: Vec<i64> = keys
                .iter()
                .filter_map(|(v, _)| {
                    if let Value::Int(x) = v {
                        Some(*x)
                    } else {
                        None
                    }
                })
                .collect();
            let mm = format!(
                "SELECT min({k})::int8, max({k})::int8 FROM {tbl} t{w}",
                k = TableSpec::col_ref(k0),
                tbl = spec.table.quoted(),
                w = spec.where_sql(&[]),
            );
            let r = self.query("reading the key range of", &mm, &[]).await?;
            if let (Some(lo), Some(hi)) =
                (r[0].get::<_, Option<i64>>(0), r[0].get::<_, Option<i64>>(1))
            {
                ints.push(lo);
                ints.push(hi);
            }
            ints.sort_unstable();
            ints.dedup();
            if let Some(ch) = even_chunking(&ints, target) {
                return Ok(ch);
            }
            let q = (ints.len() / 40).clamp(1, want);
            let step = (ints.len() - 1) as f64 / q as f64;
            let quant: Vec<i64> = (0..=q)
                .map(|i| ints[((i as f64 * step).round() as usize).min(ints.len() - 1)])
                .collect();
            // Sub-chunks per gap: mostly by the gap's share of the key range (exact for
            // evenly spread keys, and immune to the page clustering of the sample), partly
            // by its share of the sample (for skewed keys).
            let span = (quant[q] as f64 - quant[0] as f64).max(1.0);
            let per_gap = |a: i64, b: i64| -> i128 {
                let share = 0.75 * (b as f64 - a as f64) / span + 0.25 / q as f64;
                ((target as f64 * share).round() as i128).max(1)
            };
            let mut last: Option<i64> = None;
            let mut push = |x: i64, ch: &mut Chunking| {
                if last.is_none_or(|l| x > l) {
                    ch.push_bound(Value::Int(x), x.to_string());
                    last = Some(x);
                }
            };
            for w in quant.windows(2) {
                let (a, b) = (w[0] as i128, w[1] as i128);
                let m = per_gap(w[0], w[1]);
                for j in 0..m {
                    push((a + (b - a) * j / m) as i64, &mut ch);
                }
            }
            if let Some(&max) = quant.last() {
                push(max.saturating_add(1), &mut ch);
            }
        } else {
            let step = (keys.len() as f64 / target as f64).max(1.0);
            let mut i = step;
            while (i as usize) < keys.len() {
                let (v, t) = &keys[i as usize];
                ch.push_bound(v.clone(), t.clone());
                i += step;
            }
        }
        Ok(ch)
    }

    /// Bounds of a composite key: a sample of whole keys (rows picked independently), in
    /// the order of [`TableSpec::key_expr`] (column by column, text in byte order), one per
    /// chunk.
    pub(super) async fn sample_composite(
        &mut self,
        estimated_rows: u64,
        target: usize,
    ) -> Result<Chunking> {
        let spec = self.spec.clone();
        let nk = spec.key.len();
        let sample = if estimated_rows <= 4 * target as u64 || estimated_rows < 20_000 {
            String::new()
        } else {
            // BERNOULLI, not SYSTEM: SYSTEM returns whole pages, i.e. runs of neighbouring
            // keys when the table was filled in key order within each first-column value,
            // and bounds taken from such runs make chunks of 1 row inside a run and of
            // hundreds between runs (measured: 1M rows, 4 tenants, 600 rows per differing
            // chunk instead of 26). BERNOULLI picks rows independently (it reads every page).
            let pct = (target as f64 * 150.0 / estimated_rows as f64).min(100.0);
            format!(" TABLESAMPLE BERNOULLI ({pct:.6})")
        };
        let renamed: Vec<Column> = spec
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| Column {
                name: format!("k{i}"),
                ..k.clone()
            })
            .collect();
        let sql = format!(
            "SELECT {sel}, {texts} FROM (SELECT DISTINCT {raw} FROM {tbl} t{sample}{w}) s ORDER BY {order}",
            sel = renamed
                .iter()
                .map(|c| expr::select_expr(c, Some("s")))
                .collect::<Vec<_>>()
                .join(", "),
            texts = (0..nk)
                .map(|i| format!("s.k{i}::text"))
                .collect::<Vec<_>>()
                .join(", "),
            raw = spec
                .key
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{} AS k{i}", TableSpec::col_ref(k)))
                .collect::<Vec<_>>()
                .join(", "),
            tbl = spec.table.quoted(),
            w = spec.where_sql(&[format!("NOT {}", spec.key_null_sql())]),
            order = renamed
                .iter()
                .map(|c| {
                    let mut s = format!("s.{}", quote_ident(&c.name));
                    if c.collation.is_some() && !c.is_array {
                        s.push_str(" COLLATE \"C\"");
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
        let rows = self.query("sampling the keys of", &sql, &[]).await?;
        if rows.len() < 2 {
            return Ok(Chunking::default());
        }
        let mut ch = Chunking {
            tuple_text: vec![Vec::new(); nk],
            ..Chunking::default()
        };
        let step = (rows.len() as f64 / target as f64).max(1.0);
        let mut i = step;
        while (i as usize) < rows.len() {
            let r = &rows[i as usize];
            let key = decode::decode_row(r, 0, &spec.key).map_err(|m| Error::Table {
                table: spec.table.to_string(),
                message: m,
            })?;
            for (c, col) in ch.tuple_text.iter_mut().enumerate() {
                col.push(r.get::<_, String>(nk + c));
            }
            ch.push_bound(key[0].clone(), r.get::<_, String>(nk));
            ch.tuples.push(key);
            i += step;
        }
        Ok(ch)
    }
}
