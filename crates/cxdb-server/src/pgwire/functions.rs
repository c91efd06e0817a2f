//! What a connection's session gets on top of the query layer's tables:
//! datafusion-postgres' `pg_catalog` schema and functions, plus three
//! functions clients call on connect that it lacks or answers differently:
//! `version()` (DataFusion's says "Apache DataFusion …", which version
//! parsers reject), `current_setting(name [, missing_ok])` (Grafana's
//! connection test reads `server_version_num`) and `to_regtype(name)`
//! (psycopg's type lookup, which SQLAlchemy runs on connect).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::catalog::SchemaProvider;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::types::format::FormatOptions;

use super::error::SqlStateError;

/// The `pg_catalog` schema all connections share, built over `template` (a
/// session of the query layer). datafusion-postgres numbers tables, schemas
/// and types as its catalog first meets them; one shared catalog keeps
/// those oids the same on every connection, as pooled clients (DBeaver,
/// JDBC) expect. It describes names and types only, never rows, so sharing
/// it across tenant scopes reveals nothing.
pub(crate) struct SharedPgCatalog {
    schema: Arc<dyn SchemaProvider>,
    /// Kept alive: its schemas plan views through it.
    _template: SessionContext,
}

impl SharedPgCatalog {
    pub(crate) fn new(template: SessionContext) -> Result<Self> {
        let catalog = default_catalog(&template);
        // No roles yet (tokens arrive with issue #6): pg_roles is empty.
        setup_pg_catalog(&template, &catalog, EmptyContextProvider).map_err(|e| *e)?;
        let schema = template
            .catalog(&catalog)
            .and_then(|c| c.schema("pg_catalog"))
            .ok_or_else(|| DataFusionError::Internal("pg_catalog was not registered".into()))?;
        Ok(Self {
            schema,
            _template: template,
        })
    }
}

fn default_catalog(ctx: &SessionContext) -> String {
    ctx.state()
        .config()
        .options()
        .catalog
        .default_catalog
        .clone()
}

/// Installs the PostgreSQL catalog and functions on a connection's session.
pub(crate) fn install(ctx: &SessionContext, pg_catalog: &SharedPgCatalog) -> Result<()> {
    let catalog = default_catalog(ctx);
    // PostgreSQL's TimeZone (UTC here): `::timestamptz` is a timestamp in
    // it, as the events' timestamps are (DataFusion's default has none).
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .execution
        .time_zone = Some("UTC".into());
    // The functions, type names and planner rules of datafusion-postgres'
    // catalog, then the shared schema in place of this session's own.
    setup_pg_catalog(ctx, &catalog, EmptyContextProvider).map_err(|e| *e)?;
    ctx.catalog(&catalog)
        .ok_or_else(|| DataFusionError::Internal(format!("no catalog {catalog}")))?
        .register_schema("pg_catalog", Arc::clone(&pg_catalog.schema))?;
    ctx.register_udf(ScalarUDF::from(Version::new()));
    ctx.register_udf(ScalarUDF::from(CurrentSetting::new()));
    ctx.register_udf(ScalarUDF::from(ToRegtype::new()));
    Ok(())
}

/// The server defaults `current_setting` answers. `SET` changes what `SHOW`
/// answers for the connection, not these (a function cannot see the
/// connection's settings).
fn setting(name: &str) -> Option<String> {
    let format = FormatOptions::default();
    let value = match name.to_ascii_lowercase().as_str() {
        "server_version" => super::server_version(),
        "server_version_num" => super::PG_VERSION_NUM.into(),
        "server_encoding" | "client_encoding" => "UTF8".into(),
        "search_path" => "public".into(),
        "timezone" => format.time_zone,
        "datestyle" => format.date_style,
        "intervalstyle" => format.interval_style,
        "bytea_output" => format.bytea_output,
        "extra_float_digits" => format.extra_float_digits.to_string(),
        "standard_conforming_strings" | "integer_datetimes" | "is_superuser" => "on".into(),
        "default_transaction_read_only" | "in_hot_standby" => "off".into(),
        "transaction_isolation" | "default_transaction_isolation" => "read committed".into(),
        "max_identifier_length" => "63".into(),
        "block_size" => "8192".into(),
        "lc_collate" | "lc_ctype" => "C.UTF-8".into(),
        "statement_timeout" => "0".into(),
        "application_name" => String::new(),
        _ => return None,
    };
    Some(value)
}

/// `version()`: `PostgreSQL 16.0 (cxdb x.y.z) on …`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Version {
    signature: Signature,
}

impl Version {
    fn new() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Version {
    fn name(&self) -> &str {
        "version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            super::version_string(),
        ))))
    }
}

/// `current_setting(name)` and `current_setting(name, missing_ok)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

/// PostgreSQL's answer to an unknown name (SQLSTATE 42704).
fn unknown_setting(name: &str) -> DataFusionError {
    DataFusionError::External(Box::new(SqlStateError::new(
        "42704",
        format!("unrecognized configuration parameter \"{name}\""),
    )))
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(b))) => b.unwrap_or(false),
            Some(_) => {
                return Err(DataFusionError::Plan(
                    "current_setting: missing_ok must be a constant".into(),
                ));
            }
            None => false,
        };
        let lookup = |name: &str| match setting(name) {
            Some(v) => Ok(Some(v)),
            None if missing_ok => Ok(None),
            None => Err(unknown_setting(name)),
        };
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => {
                let value = match name {
                    Some(name) => lookup(name)?,
                    None => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
            }
            ColumnarValue::Array(names) => {
                let names = names.as_string::<i32>();
                let mut out = StringBuilder::with_capacity(names.len(), names.len() * 8);
                for name in names.iter() {
                    match name {
                        Some(name) => out.append_option(lookup(name)?),
                        None => out.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
            }
            other => Err(DataFusionError::Internal(format!(
                "current_setting: unexpected argument {other:?}"
            ))),
        }
    }
}

/// `to_regtype(name)`: the oid of a built-in type (`int4`, `integer`,
/// `pg_catalog.text`, `text[]`), NULL for any other name, never an error.
/// psycopg's `TypeInfo.fetch` compares `pg_type.oid` with it; SQLAlchemy
/// calls that on connect to look for `hstore` (NULL: there is none). cxdb
/// has no user-defined types, so the built-in list is the whole answer.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToRegtype {
    signature: Signature,
}

impl ToRegtype {
    fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
        }
    }
}

/// The oid of a built-in type by name, as PostgreSQL's `to_regtype` reads
/// the common spellings.
fn builtin_type_oid(name: &str) -> Option<i32> {
    static OIDS: OnceLock<HashMap<String, u32>> = OnceLock::new();
    let oids = OIDS.get_or_init(|| {
        (0..10_000)
            .filter_map(Type::from_oid)
            .map(|t| (t.name().to_string(), t.oid()))
            .collect()
    });
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let alias = |name: &str| -> String {
        match name {
            "integer" | "int" => "int4",
            "smallint" => "int2",
            "bigint" => "int8",
            "boolean" => "bool",
            "real" => "float4",
            "double precision" => "float8",
            "decimal" => "numeric",
            "character varying" => "varchar",
            "character" | "char" => "bpchar",
            "timestamp with time zone" => "timestamptz",
            "timestamp without time zone" => "timestamp",
            "time with time zone" => "timetz",
            "time without time zone" => "time",
            other => other,
        }
        .to_string()
    };
    let key = match name.strip_suffix("[]") {
        Some(element) => format!("_{}", alias(element.trim_end())),
        None => alias(name),
    };
    oids.get(&key).and_then(|oid| i32::try_from(*oid).ok())
}

impl ScalarUDFImpl for ToRegtype {
    fn name(&self) -> &str {
        "to_regtype"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Int32(name.as_deref().and_then(builtin_type_oid)),
            )),
            ColumnarValue::Array(names) => {
                let oids: Int32Array = names
                    .as_string::<i32>()
                    .iter()
                    .map(|name| name.and_then(builtin_type_oid))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(oids) as ArrayRef))
            }
            other => Err(DataFusionError::Internal(format!(
                "to_regtype: unexpected argument {other:?}"
            ))),
        }
    }
}
