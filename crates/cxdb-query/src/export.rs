//! Exports for audits: `COPY (query) TO 'file' (FORMAT parquet|csv|json)`
//! on every SQL protocol, and the audit of `cxdb export` (a Flight SQL
//! `DoGet` whose rows the client writes).
//!
//! ```text
//!  COPY … TO 'file' ─► role may export? (analyst, admin) ─► export location configured?
//!     ─► path inside it? (relative, no `..`, no symlink, no other URL)
//!     ─► the query, planned in the principal's scoped session, read-only
//!     ─► DataFusion's file sink (streamed to the object store) ─► audit_log ─► (rows, path)
//! ```
//!
//! The export location (`--export-dir`) is a local directory or an object
//! store URL prefix; either way it is one object store registered as
//! `cxdb://exports`, so a resolved path can only name an object inside it.
//! The query runs in the principal's session, so a tenant-scoped token
//! exports only its tenant's rows, as it would read them. An export obeys
//! the query limits (memory, time, concurrency); it is not a result, so
//! `--max-result-rows` does not cap it.

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cxdb_model::time::now_micros;
use datafusion::common::config::CsvOptions;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SQLOptions, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use object_store::ObjectStore;
use tracing::warn;

use crate::audit::{AuditLog, AuditRecord};
use crate::executor::{bind, parameters};
use crate::{Error, Principal, QueryEngine, Result, StatementInfo};

/// Where the export store is registered in every session's runtime.
pub(crate) const EXPORT_URL: &str = "cxdb://exports";

/// A server's exports: where they may go, and their audit log.
#[derive(Debug)]
pub(crate) struct Exports {
    pub(crate) location: Option<ExportLocation>,
    pub(crate) audit: AuditLog,
}

/// The configured export location (`--export-dir`).
#[derive(Debug, Clone)]
pub(crate) struct ExportLocation {
    /// As answers and messages show it: an absolute directory or a URL,
    /// without a trailing `/`.
    base: String,
    /// The directory when local, whose paths are checked for symlinks.
    local_root: Option<PathBuf>,
}

impl ExportLocation {
    /// Opens `location`: a local directory (created if missing) or an
    /// object store URL prefix (`s3://bucket/exports`, `gs://…`, `az://…`,
    /// `file:///abs/dir`), configured as the lake's store is.
    pub(crate) fn open(location: &str) -> Result<(Self, Arc<dyn ObjectStore>)> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Internal(format!("export location {location:?} (--export-dir): {e}"))
        };
        let local = match url::Url::parse(location) {
            Ok(url) if url.scheme() == "file" => Some(
                url.to_file_path()
                    .map_err(|()| bad(&"not an absolute file URL"))?,
            ),
            // A Windows drive letter parses as a scheme; a URL has `://`.
            Ok(_) if location.contains("://") => None,
            _ => Some(PathBuf::from(location)),
        };
        let Some(dir) = local else {
            let store = cxdb_storage::Lake::open(location)?.store;
            // `memory://` keeps its `//`: objects show as `memory:///a.csv`.
            let base = match location.trim_end_matches('/') {
                scheme if scheme.ends_with(':') => format!("{scheme}//"),
                base => base.to_string(),
            };
            return Ok((
                Self {
                    base,
                    local_root: None,
                },
                store,
            ));
        };
        std::fs::create_dir_all(&dir).map_err(|e| bad(&e))?;
        let root = dir.canonicalize().map_err(|e| bad(&e))?;
        let store =
            object_store::local::LocalFileSystem::new_with_prefix(&root).map_err(|e| bad(&e))?;
        Ok((
            Self {
                base: root.display().to_string(),
                local_root: Some(root),
            },
            Arc::new(store),
        ))
    }

    fn refuse(&self, target: &str, why: &str) -> Error {
        Error::PermissionDenied(format!(
            "COPY to {target:?} refused: {why}; exports are written only inside the export \
             location {} (--export-dir): name a relative path such as 'audit/march.parquet'",
            self.base
        ))
    }

    /// The object path of `target` inside the location, and how it is
    /// shown. Relative paths resolve under the location; an absolute path
    /// or URL is accepted only inside it; `..` never.
    fn resolve(&self, target: &str) -> Result<(String, String)> {
        let relative = if target.contains("://") {
            match (&self.local_root, url::Url::parse(target)) {
                (Some(_), Ok(url)) if url.scheme() == "file" => {
                    let path = url
                        .to_file_path()
                        .map_err(|()| self.refuse(target, "not a file path"))?;
                    self.strip_root(target, &path)?
                }
                _ => target
                    .strip_prefix(&self.base)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .ok_or_else(|| self.refuse(target, "the URL is outside it"))?
                    .to_string(),
            }
        } else if target.starts_with('/') {
            self.strip_root(target, Path::new(target))?
        } else {
            target.to_string()
        };
        let mut parts = Vec::new();
        for part in relative.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(self.refuse(target, "`..` is not allowed")),
                part if part.chars().any(char::is_control) => {
                    return Err(self.refuse(target, "control characters are not allowed"));
                }
                part => parts.push(part),
            }
        }
        if parts.is_empty() || relative.ends_with('/') {
            return Err(self.refuse(target, "it names a directory, not a file"));
        }
        if let Some(root) = &self.local_root {
            let mut path = root.clone();
            for part in &parts {
                path.push(part);
                if path
                    .symlink_metadata()
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return Err(self.refuse(target, "it goes through a symbolic link"));
                }
            }
        }
        let relative = parts.join("/");
        let shown = match &self.local_root {
            Some(root) => root.join(&relative).display().to_string(),
            None => format!("{}/{relative}", self.base),
        };
        Ok((relative, shown))
    }

    /// `path` (absolute) relative to the local root, or refused.
    fn strip_root(&self, target: &str, path: &Path) -> Result<String> {
        let Some(root) = &self.local_root else {
            return Err(self.refuse(target, "an absolute path is outside it"));
        };
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(self.refuse(target, "`..` is not allowed"));
        }
        path.strip_prefix(root)
            .map(|rest| rest.to_string_lossy().into_owned())
            .map_err(|_| self.refuse(target, "the absolute path is outside it"))
    }
}

/// The file formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
    /// One JSON object per line (NDJSON).
    Json,
}

impl Format {
    fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Self::Parquet),
            "csv" => Ok(Self::Csv),
            "json" | "ndjson" => Ok(Self::Json),
            other => Err(DataFusionError::Configuration(format!(
                "COPY to a file supports FORMAT parquet, csv or json, not {other:?}"
            ))
            .into()),
        }
    }

    /// From the file name when no FORMAT is given.
    fn of(target: &str) -> Result<Self> {
        let ext = target.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("parquet") => Ok(Self::Parquet),
            Some("csv") => Ok(Self::Csv),
            Some("json" | "ndjson" | "jsonl") => Ok(Self::Json),
            _ => Err(DataFusionError::Configuration(format!(
                "cannot tell the format of {target:?} from its extension: add (FORMAT parquet), \
                 (FORMAT csv) or (FORMAT json)"
            ))
            .into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }
}

/// A `COPY … TO 'file'` statement, understood.
#[derive(Debug)]
struct CopyTo {
    query: Statement,
    target: String,
    format: Format,
    /// CSV: a header line with the column names (default on).
    header: bool,
    delimiter: u8,
}

fn unsupported(what: impl std::fmt::Display) -> Error {
    DataFusionError::NotImplemented(format!("COPY to a file: option {what} is not supported"))
        .into()
}

impl CopyTo {
    fn parse(statement: &Statement) -> Result<Self> {
        let Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } = statement
        else {
            return plan_err!("not a COPY statement").map_err(Into::into);
        };
        if !to {
            return Err(Error::PermissionDenied(
                "COPY FROM is not allowed: cxdb's SQL is read-only (write events with gRPC, \
                 HTTP or Arrow Flight)"
                    .into(),
            ));
        }
        let target = match target {
            CopyTarget::File { filename } => filename.clone(),
            CopyTarget::Stdout => {
                return plan_err!(
                    "COPY … TO STDOUT is answered over the PostgreSQL protocol only (psql's \
                     \\copy); here, run the query itself, or COPY (query) TO 'file' \
                     (FORMAT parquet|csv|json) to export under --export-dir"
                )
                .map_err(Into::into);
            }
            CopyTarget::Program { .. } | CopyTarget::Stdin => {
                return Err(Error::PermissionDenied(
                    "COPY to a program is not allowed".into(),
                ));
            }
        };
        let mut format = None;
        let mut header = None;
        let mut delimiter = None;
        for option in options {
            match option {
                CopyOption::Format(name) => format = Some(Format::parse(&name.value)?),
                CopyOption::Header(h) => header = Some(*h),
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                // UTF-8 is all cxdb writes.
                CopyOption::Encoding(e)
                    if e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("utf-8") => {}
                other => return Err(unsupported(other)),
            }
        }
        for option in legacy_options {
            match option {
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Csv(csv) => {
                    format = Some(Format::Csv);
                    for option in csv {
                        match option {
                            CopyLegacyCsvOption::Header => header = Some(true),
                            other => return Err(unsupported(other)),
                        }
                    }
                }
                other => return Err(unsupported(other)),
            }
        }
        let format = match format {
            Some(f) => f,
            None => Format::of(&target)?,
        };
        if format != Format::Csv && (header.is_some() || delimiter.is_some()) {
            return Err(DataFusionError::Configuration(
                "HEADER and DELIMITER apply to FORMAT csv only".into(),
            )
            .into());
        }
        let delimiter = match delimiter {
            None => b',',
            Some(c) => u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
                DataFusionError::Configuration(format!(
                    "the DELIMITER must be one ASCII character, not {c:?}"
                ))
            })?,
        };
        let query = copy_source_query(source)?;
        Ok(Self {
            query,
            target,
            format,
            header: header.unwrap_or(true),
            delimiter,
        })
    }
}

/// `sql` as a `COPY` statement when it is one (the executor's entry): the
/// PostgreSQL form `COPY (query) TO 'file' (FORMAT …)` that every protocol
/// accepts, which DataFusion's own parser does not.
/// The query a `COPY` reads: `COPY (query) TO …` as it is, `COPY table
/// [(columns)] TO …` as `SELECT columns FROM table`. Shared with pgwire's
/// `COPY … TO STDOUT`.
pub fn copy_source_query(source: &CopySource) -> datafusion::error::Result<Statement> {
    match source {
        CopySource::Query(query) => Ok(Statement::Query(query.clone())),
        CopySource::Table {
            table_name,
            columns,
        } => {
            let projection = if columns.is_empty() {
                "*".to_string()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!("SELECT {projection} FROM {table_name}");
            Parser::parse_sql(&PostgreSqlDialect {}, &sql)?
                .pop()
                .ok_or_else(|| DataFusionError::Plan("empty COPY source".into()))
        }
    }
}

pub(crate) fn copy_statement(sql: &str) -> Result<Option<Statement>> {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    if !first.eq_ignore_ascii_case("copy") {
        return Ok(None);
    }
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| {
        DataFusionError::Plan(format!(
            "{e}; an export reads COPY (query) TO 'file' (FORMAT parquet|csv|json)"
        ))
    })?;
    match (statements.pop(), statements.is_empty()) {
        (Some(statement @ Statement::Copy { .. }), true) => Ok(Some(statement)),
        (Some(Statement::Copy { .. }), false) => {
            plan_err!("send one COPY statement at a time").map_err(Into::into)
        }
        _ => Ok(None),
    }
}

/// Exports need an analyst or admin token.
pub fn may_export(principal: &Principal) -> Result<()> {
    if principal.role.can_export() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{} cannot export (needs an analyst or admin token)",
            principal.role.a_token()
        )))
    }
}

/// The answer to a COPY: one row.
fn answer_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("rows", DataType::Int64, false),
            Field::new("path", DataType::Utf8, false),
        ]))
    });
    Arc::clone(&SCHEMA)
}

/// What a file written by `cxdb export` is, as its client declares it.
#[derive(Debug, Clone)]
pub struct ClientExport {
    pub format: String,
    pub destination: String,
}

/// An audit record of `principal` running `query`, before its outcome.
fn record(
    principal: &Principal,
    query: String,
    written_by: &str,
    format: &str,
    destination: String,
) -> AuditRecord {
    AuditRecord {
        exported_at_us: now_micros(),
        who: principal.who().to_string(),
        role: principal.role.as_str().to_string(),
        tenant_scope: principal.tenant.clone(),
        protocol: principal.protocol.to_string(),
        written_by: written_by.to_string(),
        query,
        format: format.to_string(),
        destination,
        rows: 0,
        status: "ok".to_string(),
    }
}

/// A COPY checked and planned, ready to run.
struct Planned {
    ctx: SessionContext,
    copy: CopyTo,
    plan: LogicalPlan,
    /// The object path inside the export location, and as shown.
    object: String,
    shown: String,
}

impl QueryEngine {
    /// The audit log of every export.
    pub fn audit_log(&self) -> &AuditLog {
        &self.exports.audit
    }

    /// Checks a COPY (role, export location, path, read-only query) and
    /// plans its query in the principal's session, with `params` bound
    /// when given.
    async fn plan_copy(
        &self,
        principal: &Principal,
        statement: &Statement,
        params: Option<Vec<ScalarValue>>,
    ) -> Result<Planned> {
        may_export(principal)?;
        let copy = CopyTo::parse(statement)?;
        let Some(location) = &self.exports.location else {
            return Err(Error::PermissionDenied(
                "COPY to a server file is disabled on this server: start it with --export-dir \
                 PATH (CXDB_EXPORT_DIR) to allow exports there, or use COPY … TO STDOUT"
                    .into(),
            ));
        };
        let (object, shown) = location.resolve(&copy.target)?;
        let ctx = self.session(principal.tenant.as_deref())?;
        let plan = ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(copy.query.clone())))
            .await?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)?;
        let plan = match params {
            Some(params) => {
                let values = bind(&parameters(&plan)?, params)?;
                plan.with_param_values(values)?
            }
            None => plan,
        };
        Ok(Planned {
            ctx,
            copy,
            plan,
            object,
            shown,
        })
    }

    /// What a COPY returns and takes, checked but not run.
    pub(crate) async fn describe_copy(
        &self,
        principal: &Principal,
        statement: &Statement,
    ) -> Result<StatementInfo> {
        let planned = self.plan_copy(principal, statement, None).await?;
        Ok(StatementInfo {
            schema: answer_schema(),
            parameters: parameters(&planned.plan)?,
        })
    }

    /// Runs `COPY (query) TO 'file'`, records it in the audit log (also
    /// when it fails), and answers one row: the rows written and the path.
    pub(crate) async fn copy_to_file(
        &self,
        principal: &Principal,
        statement: &Statement,
        params: Vec<ScalarValue>,
    ) -> Result<SendableRecordBatchStream> {
        let planned = self.plan_copy(principal, statement, Some(params)).await?;
        let mut record = record(
            principal,
            statement.to_string(),
            "server",
            planned.copy.format.name(),
            planned.shown.clone(),
        );
        match write(&planned).await {
            Ok(rows) => {
                record.rows = rows;
                self.exports.audit.record(record).await?;
                let rows = i64::try_from(rows).unwrap_or(i64::MAX);
                let batch = RecordBatch::try_new(
                    answer_schema(),
                    vec![
                        Arc::new(Int64Array::from(vec![rows])) as ArrayRef,
                        Arc::new(StringArray::from(vec![planned.shown])),
                    ],
                )
                .map_err(DataFusionError::from)?;
                Ok(Box::pin(RecordBatchStreamAdapter::new(
                    answer_schema(),
                    futures::stream::iter([Ok(batch)]),
                )))
            }
            Err(e) => {
                record.status = format!("error: {e}");
                if let Err(audit) = self.exports.audit.record(record).await {
                    warn!(error = %audit, "cannot record a failed export");
                }
                Err(e)
            }
        }
    }

    /// `cxdb export`: `batches` (the result of `query`, run by `principal`)
    /// go to a client that writes them to a file; the export is recorded
    /// when the stream ends, with the rows sent ([`AuditLog::watch`]).
    /// Check [`may_export`] before running the query.
    pub fn client_export(
        &self,
        principal: &Principal,
        query: &str,
        export: &ClientExport,
        batches: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream {
        let record = record(
            principal,
            query.to_string(),
            "client",
            &export.format,
            export.destination.clone(),
        );
        self.exports.audit.watch(record, batches)
    }
}

/// Writes the query's result as one file through DataFusion's file sink
/// (batches stream to the object store as they come); the rows written.
async fn write(planned: &Planned) -> Result<u64> {
    let df = planned
        .ctx
        .execute_logical_plan(planned.plan.clone())
        .await?;
    let url = format!("{EXPORT_URL}/{}", planned.object);
    let options = DataFrameWriteOptions::new().with_single_file_output(true);
    let copy = &planned.copy;
    let counts = match copy.format {
        Format::Parquet => df.write_parquet(&url, options, None).await?,
        Format::Csv => {
            let csv = CsvOptions {
                has_header: Some(copy.header),
                delimiter: copy.delimiter,
                ..Default::default()
            };
            df.write_csv(&url, options, Some(csv)).await?
        }
        Format::Json => df.write_json(&url, options, None).await?,
    };
    let mut rows = 0;
    for batch in &counts {
        if let Some(count) = batch
            .columns()
            .first()
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        {
            rows += count.iter().flatten().sum::<u64>();
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location() -> (tempfile::TempDir, ExportLocation) {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dir = tmp.path().join("exports");
        let (location, _) =
            ExportLocation::open(&dir.display().to_string()).unwrap_or_else(|e| panic!("{e}"));
        (tmp, location)
    }

    #[test]
    fn paths_resolve_inside_the_location_only() {
        let (tmp, loc) = location();
        let root = tmp
            .path()
            .join("exports")
            .canonicalize()
            .unwrap_or_else(|e| panic!("{e}"));
        let ok = |t: &str| loc.resolve(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(ok("a.csv").0, "a.csv");
        assert_eq!(ok("./q1/a.parquet").0, "q1/a.parquet");
        assert_eq!(
            ok("q1//a.parquet").1,
            root.join("q1/a.parquet").display().to_string()
        );
        let inside = root.join("x/y.json").display().to_string();
        assert_eq!(ok(&inside).0, "x/y.json");
        assert_eq!(ok(&format!("file://{inside}")).0, "x/y.json");

        let refused = |t: &str, why: &str| match loc.resolve(t) {
            Err(Error::PermissionDenied(m)) => {
                assert!(m.contains(why), "{t}: {m}");
                assert!(m.contains("--export-dir"), "{t}: {m}");
            }
            other => panic!("{t}: {other:?}"),
        };
        refused("../a.csv", "`..`");
        refused("q/../../a.csv", "`..`");
        refused("/etc/passwd", "outside");
        refused(&format!("{}/../a.csv", root.display()), "`..`");
        refused("file:///tmp/a.csv", "outside");
        refused("s3://bucket/a.csv", "outside");
        refused("", "directory");
        refused("q1/", "directory");

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap_or_else(|e| panic!("{e}"));
            refused("link/a.csv", "symbolic link");
        }
    }

    #[test]
    fn copy_statements_and_options() {
        let parse = |sql: &str| {
            let statement = copy_statement(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .unwrap_or_else(|| panic!("{sql}: not a COPY"));
            CopyTo::parse(&statement)
        };
        let copy =
            parse("COPY (SELECT 1) TO 'a.out' (FORMAT parquet)").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (copy.target.as_str(), copy.format),
            ("a.out", Format::Parquet)
        );
        let copy = parse("copy events (tenant_id) to 'a.csv' (header false, delimiter ';')")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (copy.format, copy.header, copy.delimiter),
            (Format::Csv, false, b';')
        );
        assert_eq!(
            parse("COPY events TO 'x.ndjson'").map(|c| c.format).ok(),
            Some(Format::Json)
        );
        assert!(matches!(
            parse("COPY events FROM 'x.csv'"),
            Err(Error::PermissionDenied(_))
        ));
        assert!(parse("COPY events TO 'x'").is_err());
        assert!(parse("COPY events TO 'x.csv' (FORMAT binary)").is_err());
        assert!(parse("COPY events TO 'x.parquet' (HEADER)").is_err());
        assert!(parse("COPY events TO STDOUT").is_err());
        assert!(
            copy_statement("SELECT 1")
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
    }
}
