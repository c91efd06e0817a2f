//! What a connection's session gets on top of the query layer's tables:
//! datafusion-postgres' `pg_catalog` schema and functions, plus three
//! functions clients call on connect that it lacks or answers differently:
//! `version()` (DataFusion's says "Apache DataFusion …", which version
//! parsers reject), `current_setting(name [, missing_ok])` (Grafana's
//! connection test reads `server_version_num`) and `to_regtype(name)`
//! (psycopg's type lookup, which SQLAlchemy runs on connect); and what
//! SQLAlchemy's inspector needs: `json_build_object`, `pg_type_is_visible`,
//! `pg_collation_is_visible`, `pg_get_serial_sequence`, `pg_get_indexdef`,
//! `pg_get_viewdef` (see catalog.rs), `cxdb_like_escape`, and `pg_index` /
//! `pg_class` with the column types and columns PostgreSQL has.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::logical_expr::{LogicalPlanBuilder, cast, col, lit};
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
            schema: Arc::new(CatalogOverlay { inner: schema }),
            _template: template,
        })
    }
}

/// datafusion-postgres' `pg_catalog` with `pg_index` as PostgreSQL types it:
/// its `indkey`, `indclass`, `indcollation` and `indoption` are arrays
/// (`int2vector`, `oidvector`), which SQLAlchemy's `get_pk_constraint`,
/// `get_indexes` and `get_unique_constraints` `unnest`; datafusion-postgres
/// has them as text. cxdb has no indexes, so the table is empty (the rows
/// datafusion-postgres ships describe a PostgreSQL's own system tables).
#[derive(Debug)]
struct CatalogOverlay {
    inner: Arc<dyn SchemaProvider>,
}

#[async_trait::async_trait]
impl SchemaProvider for CatalogOverlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        if name.eq_ignore_ascii_case("pg_class") {
            return table.map(with_reloptions).transpose();
        }
        if !name.eq_ignore_ascii_case("pg_index") {
            return Ok(table);
        }
        let Some(table) = table else { return Ok(None) };
        let fields: Vec<Field> = table
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let element = match f.name().as_str() {
                    "indkey" | "indoption" => DataType::Int16,
                    "indclass" | "indcollation" => DataType::Int32,
                    _ => return f.as_ref().clone(),
                };
                Field::new(f.name(), DataType::new_list(element, true), f.is_nullable())
            })
            .collect();
        let empty = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
        Ok(Some(Arc::new(empty)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
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
    for constant in Constant::all() {
        ctx.register_udf(ScalarUDF::from(constant));
    }
    ctx.register_udf(ScalarUDF::from(JsonBuildObject::new()));
    ctx.register_udf(ScalarUDF::from(LikeEscape::new()));
    Ok(())
}

/// `pg_class` with `reloptions` (`text[]`, NULL: no storage options),
/// which SQLAlchemy's `get_indexes` reads and datafusion-postgres lacks.
fn with_reloptions(pg_class: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
    if pg_class.schema().field_with_name("reloptions").is_ok() {
        return Ok(pg_class);
    }
    let columns = pg_class
        .schema()
        .fields()
        .iter()
        .map(|f| col(f.name().as_str()))
        .chain(std::iter::once(
            cast(
                lit(ScalarValue::Null),
                DataType::new_list(DataType::Utf8, true),
            )
            .alias("reloptions"),
        ))
        .collect::<Vec<_>>();
    let plan = LogicalPlanBuilder::scan("pg_class", provider_as_source(pg_class), None)?
        .project(columns)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
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

/// Catalog functions whose answer does not depend on their arguments in
/// cxdb: every type and collation is visible (one schema, no search path
/// games), no column owns a sequence, no index has a definition (there are
/// no indexes), and a view's definition is found by the catalog rewrite
/// (catalog.rs) when asked as `pg_get_viewdef(pg_class.oid)`, NULL otherwise.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    signature: Signature,
    value: ScalarValue,
}

impl Constant {
    fn all() -> Vec<Self> {
        let any = |n: usize| Signature::any(n, Volatility::Stable);
        let text = ScalarValue::Utf8(None);
        vec![
            Self {
                name: "pg_type_is_visible",
                signature: any(1),
                value: ScalarValue::Boolean(Some(true)),
            },
            Self {
                name: "pg_collation_is_visible",
                signature: any(1),
                value: ScalarValue::Boolean(Some(true)),
            },
            Self {
                name: "pg_get_serial_sequence",
                signature: any(2),
                value: text.clone(),
            },
            Self {
                name: "pg_get_indexdef",
                signature: Signature::one_of(
                    vec![TypeSignature::Any(1), TypeSignature::Any(3)],
                    Volatility::Stable,
                ),
                value: text.clone(),
            },
            Self {
                name: "pg_get_viewdef",
                signature: Signature::one_of(
                    vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                    Volatility::Stable,
                ),
                value: text,
            },
        ]
    }
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// `json_build_object(key, value, …)`: a JSON object's text (SQLAlchemy
/// builds identity and collation details with it). Values are JSON
/// numbers, booleans, null or strings (anything else as its text).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![TypeSignature::VariadicAny, TypeSignature::Nullary],
                Volatility::Stable,
            ),
        }
    }
}

fn json_value(value: &ScalarValue) -> serde_json::Value {
    use serde_json::Value as J;
    if value.is_null() {
        return J::Null;
    }
    match value {
        ScalarValue::Boolean(Some(b)) => J::Bool(*b),
        ScalarValue::Int8(Some(v)) => J::from(*v),
        ScalarValue::Int16(Some(v)) => J::from(*v),
        ScalarValue::Int32(Some(v)) => J::from(*v),
        ScalarValue::Int64(Some(v)) => J::from(*v),
        ScalarValue::UInt8(Some(v)) => J::from(*v),
        ScalarValue::UInt16(Some(v)) => J::from(*v),
        ScalarValue::UInt32(Some(v)) => J::from(*v),
        ScalarValue::UInt64(Some(v)) => J::from(*v),
        ScalarValue::Float32(Some(v)) => J::from(f64::from(*v)),
        ScalarValue::Float64(Some(v)) => J::from(*v),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => J::String(s.clone()),
        other => J::String(other.to_string()),
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "json_build_object: argument list must have even number of elements".into(),
            ));
        }
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let mut out = StringBuilder::with_capacity(rows, rows * 32);
        for row in 0..rows {
            let mut object = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(DataFusionError::Execution(
                        "json_build_object: null value not allowed for object key".into(),
                    ));
                }
                let key = match json_value(&key) {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                object.insert(
                    key,
                    json_value(&ScalarValue::try_from_array(&pair[1], row)?),
                );
            }
            out.append_value(serde_json::Value::Object(object).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

/// A LIKE pattern with escape character `escape` in DataFusion's form,
/// where the backslash escapes: `pg/_%` with `/` is `pg\_%`. An empty
/// `escape` (`ESCAPE ''`) means no escape character.
pub(crate) fn like_pattern_to_backslash(pattern: &str, escape: &str) -> String {
    let escape = escape.chars().next();
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// `cxdb_like_escape(pattern, escape)`: [`like_pattern_to_backslash`] at
/// run time, for patterns that are parameters or expressions (catalog.rs
/// puts it where a catalog query says `LIKE … ESCAPE '/'`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct LikeEscape {
    signature: Signature,
}

impl LikeEscape {
    fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for LikeEscape {
    fn name(&self) -> &str {
        "cxdb_like_escape"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let patterns = args.args[0].to_array(rows)?;
        let escapes = args.args[1].to_array(rows)?;
        let (patterns, escapes) = (patterns.as_string::<i32>(), escapes.as_string::<i32>());
        let mut out = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..rows {
            if patterns.is_null(row) || escapes.is_null(row) {
                out.append_null();
            } else {
                out.append_value(like_pattern_to_backslash(
                    patterns.value(row),
                    escapes.value(row),
                ));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}
