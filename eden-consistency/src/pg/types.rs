//! PostgreSQL column types as this crate reads them: the built-in type oids, and how a column
//! of each type travels on the wire (its binary format, or a cast).

/// What [`select_expr`](crate::pg::expr::select_expr) and [`decode`](crate::pg::decode::decode)
/// need to know about a column. Implemented by [`crate::pg::schema::Column`] (the one column struct; `Column::new`
/// makes one from a name and a type oid).
pub trait ColumnType {
    /// The column's name, as in the catalog (unquoted).
    fn column_name(&self) -> &str;
    /// `pg_attribute.atttypid`.
    fn type_oid(&self) -> u32;
    /// For a domain, its base type's oid (`pg_type.typbasetype`, followed to the bottom);
    /// otherwise 0 or the type's own oid.
    fn base_type_oid(&self) -> u32;

    /// The oid whose wire format the column has: the base type for domains.
    fn effective_oid(&self) -> u32 {
        match self.base_type_oid() {
            0 => self.type_oid(),
            b => b,
        }
    }
}

impl<T: ColumnType + ?Sized> ColumnType for &T {
    fn column_name(&self) -> &str {
        (**self).column_name()
    }
    fn type_oid(&self) -> u32 {
        (**self).type_oid()
    }
    fn base_type_oid(&self) -> u32 {
        (**self).base_type_oid()
    }
}

impl ColumnType for crate::pg::schema::Column {
    fn column_name(&self) -> &str {
        &self.name
    }
    fn type_oid(&self) -> u32 {
        self.type_oid
    }
    fn base_type_oid(&self) -> u32 {
        self.base_type_oid
    }
}

/// Type oids decoded in binary here (built-in, stable across PostgreSQL versions).
#[allow(missing_docs)]
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const MONEY: u32 = 790;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;

    pub const JSON_ARRAY: u32 = 199;
    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const NAME_ARRAY: u32 = 1003;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const BPCHAR_ARRAY: u32 = 1014;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const INT8_ARRAY: u32 = 1016;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const OID_ARRAY: u32 = 1028;
    pub const MONEY_ARRAY: u32 = 791;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIME_ARRAY: u32 = 1183;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const INTERVAL_ARRAY: u32 = 1187;
    pub const NUMERIC_ARRAY: u32 = 1231;
    pub const UUID_ARRAY: u32 = 2951;
    pub const JSONB_ARRAY: u32 = 3807;
}

/// How a column of a given type travels: its own binary format, or cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// The type's binary format, decoded by [`decode_binary`](crate::pg::decode::decode_binary) with this oid.
    Binary(u32),
    /// Cast to `numeric` (`money`) or `numeric[]` (`money[]`), then binary.
    Numeric {
        /// True for `money[]`.
        array: bool,
    },
    /// Cast to `text`, read as [`Value::Other`](crate::row::value::Value::Other).
    Text,
}

/// Whether a scalar type oid is decoded in binary here.
pub fn is_binary_scalar(type_oid: u32) -> bool {
    use oid::*;
    matches!(
        type_oid,
        BOOL | BYTEA
            | NAME
            | INT8
            | INT2
            | INT4
            | TEXT
            | OID
            | JSON
            | FLOAT4
            | FLOAT8
            | BPCHAR
            | VARCHAR
            | DATE
            | TIME
            | TIMESTAMP
            | TIMESTAMPTZ
            | INTERVAL
            | NUMERIC
            | UUID
            | JSONB
    )
}

/// The element oid of a built-in array type decoded in binary here.
pub fn binary_array_elem(type_oid: u32) -> Option<u32> {
    use oid::*;
    Some(match type_oid {
        JSON_ARRAY => JSON,
        BOOL_ARRAY => BOOL,
        BYTEA_ARRAY => BYTEA,
        NAME_ARRAY => NAME,
        INT2_ARRAY => INT2,
        INT4_ARRAY => INT4,
        TEXT_ARRAY => TEXT,
        BPCHAR_ARRAY => BPCHAR,
        VARCHAR_ARRAY => VARCHAR,
        INT8_ARRAY => INT8,
        FLOAT4_ARRAY => FLOAT4,
        FLOAT8_ARRAY => FLOAT8,
        OID_ARRAY => OID,
        TIMESTAMP_ARRAY => TIMESTAMP,
        DATE_ARRAY => DATE,
        TIME_ARRAY => TIME,
        TIMESTAMPTZ_ARRAY => TIMESTAMPTZ,
        INTERVAL_ARRAY => INTERVAL,
        NUMERIC_ARRAY => NUMERIC,
        UUID_ARRAY => UUID,
        JSONB_ARRAY => JSONB,
        _ => return None,
    })
}

/// How a column of this (effective, i.e. domain-resolved) type oid is read.
pub fn wire_for(type_oid: u32) -> Wire {
    match type_oid {
        oid::MONEY => Wire::Numeric { array: false },
        oid::MONEY_ARRAY => Wire::Numeric { array: true },
        t if is_binary_scalar(t) || binary_array_elem(t).is_some() => Wire::Binary(t),
        _ => Wire::Text,
    }
}
