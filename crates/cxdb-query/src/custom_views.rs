//! `CREATE [OR REPLACE] VIEW` and `DROP VIEW` over every SQL protocol:
//! planned by DataFusion in the caller's session (so a view that does not
//! plan is refused with DataFusion's error), then recorded in the catalog
//! ([`ViewRecord`]) instead of in the session, which lives for one query.
//! Every session then finds the view through its [`ViewSchema`]
//! (`views.rs`) and plans it in its own scope.
//!
//! Rules: analyst and admin tokens only; names `[a-z_][a-z0-9_]*` in the
//! default schema; a custom view never shadows a table or a predefined view;
//! a tenant-scoped token's views are its tenant's, an unscoped token's are
//! global. Dropping a view that other views read leaves those views failing
//! at query time with an error that names them (no dependency tracking yet).
//!
//! [`ViewSchema`]: crate::views

use cxdb_model::time::now_micros;
use cxdb_storage::catalog::{ViewRecord, check_view_name};
use datafusion::common::{DFSchema, DataFusionError, TableReference};
use datafusion::logical_expr::{DdlStatement, EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;

use crate::executor::Principal;
use crate::{Error, QueryEngine, Result};

/// What a view statement did, as PostgreSQL tags it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewChange {
    Created,
    Dropped,
    /// `DROP VIEW IF EXISTS` of a view that does not exist.
    Unchanged,
}

impl ViewChange {
    pub fn tag(self) -> &'static str {
        match self {
            Self::Created => "CREATE VIEW",
            Self::Dropped | Self::Unchanged => "DROP VIEW",
        }
    }
}

/// Whether `plan` is a view statement this module handles.
pub(crate) fn is_view_ddl(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Ddl(DdlStatement::CreateView(_) | DdlStatement::DropView(_))
    )
}

/// The result of a view statement: no rows, no columns.
pub(crate) fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: std::sync::Arc::new(DFSchema::empty()),
    })
}

/// Only analyst and admin tokens manage views.
pub(crate) fn may_manage_views(principal: &Principal) -> Result<()> {
    if principal.role.can_manage_views() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{} cannot create or drop views (needs an analyst or admin token)",
            principal.role.a_token()
        )))
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::DataFusion(DataFusionError::Plan(msg.into()))
}

/// The view's name: bare, or qualified with cxdb's own catalog and schema.
fn view_name(name: &TableReference) -> Result<String> {
    let in_default =
        name.schema().is_none_or(|s| s == "public") && name.catalog().is_none_or(|c| c == "cxdb");
    if !in_default {
        return Err(invalid(format!(
            "views live in cxdb.public; {name} is elsewhere"
        )));
    }
    let table = name.table().to_string();
    check_view_name(&table).map_err(|e| invalid(e.to_string()))?;
    Ok(table)
}

/// Applies the view statement `plan` (planned in `ctx`, the principal's
/// session) to the catalog. `file` names the `--views-dir` file it came
/// from.
pub(crate) async fn apply(
    engine: &QueryEngine,
    principal: &Principal,
    ctx: &SessionContext,
    plan: &LogicalPlan,
    file: Option<&str>,
) -> Result<ViewChange> {
    may_manage_views(principal)?;
    let tenant = principal.tenant.clone();
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateView(create)) => {
            if create.temporary {
                return Err(invalid(
                    "TEMPORARY views are not supported: views are kept in the catalog",
                ));
            }
            let name = view_name(&create.name)?;
            if crate::views::is_predefined(&name) {
                return Err(invalid(format!(
                    "{name} is a predefined view; choose another name"
                )));
            }
            let manifest = engine.storage().manifest();
            let custom = manifest.views.iter().find(|v| {
                v.name == name && cxdb_storage::catalog::view_visible(v, tenant.as_deref())
            });
            if custom.is_none() && ctx.table_exist(name.as_str())? {
                return Err(invalid(format!("{name} is a table; choose another name")));
            }
            if let Some(existing) = custom {
                if existing.tenant_id != tenant {
                    return Err(invalid(format!(
                        "a global view {name} exists; choose another name"
                    )));
                }
                // A `--views-dir` file replaces the view it made before.
                let same_file = file.is_some() && existing.file.as_deref() == file;
                if !create.or_replace && !same_file {
                    return Err(invalid(format!(
                        "view {name} already exists (CREATE OR REPLACE VIEW changes it)"
                    )));
                }
            }
            let definition = create
                .definition
                .clone()
                .ok_or_else(|| invalid("CREATE VIEW without its SQL text"))?;
            let record = ViewRecord {
                name,
                definition,
                tenant_id: tenant,
                file: file.map(str::to_string),
                created_by: principal
                    .token
                    .clone()
                    .unwrap_or_else(|| "admin".to_string()),
                updated_at: now_micros(),
            };
            engine.storage().commit_catalog(move |m| {
                m.upsert_view(record);
                Ok(())
            })?;
            Ok(ViewChange::Created)
        }
        LogicalPlan::Ddl(DdlStatement::DropView(drop)) => {
            let name = view_name(&drop.name)?;
            if crate::views::is_predefined(&name) {
                return Err(invalid(format!(
                    "{name} is a predefined view and cannot be dropped"
                )));
            }
            let dropped = engine
                .storage()
                .commit_catalog(|m| Ok(m.drop_view(tenant.as_deref(), &name)))?;
            match (dropped, drop.if_exists) {
                (true, _) => Ok(ViewChange::Dropped),
                (false, true) => Ok(ViewChange::Unchanged),
                (false, false) => Err(invalid(format!("view {name} does not exist"))),
            }
        }
        _ => Err(Error::Internal("not a view statement".into())),
    }
}

/// One `--views-dir` file that could not be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewFileError {
    pub file: String,
    pub error: String,
}

impl QueryEngine {
    /// Installs the views of `dir` (`--views-dir`): every `*.sql` file holds
    /// one `CREATE [OR REPLACE] VIEW`, installed as a global view (a file's
    /// view replaces the one it made at the previous start). Files are tried
    /// in name order, then again while any succeeds, so a view may read a
    /// view of a later file. A file that fails is returned with its error
    /// and the others are still installed; views of files that are gone are
    /// dropped. Reading the directory itself failing is an error.
    pub async fn load_views_dir(&self, dir: &std::path::Path) -> Result<Vec<ViewFileError>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            Error::Internal(format!("cannot read --views-dir {}: {e}", dir.display()))
        })?;
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        let admin = Principal::unscoped();
        let mut pending: Vec<(String, String)> = Vec::new();
        let mut errors = Vec::new();
        for path in &files {
            let name = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(sql) => pending.push((name, sql)),
                Err(e) => errors.push(ViewFileError {
                    file: name,
                    error: e.to_string(),
                }),
            }
        }
        loop {
            let mut failed = Vec::new();
            let before = pending.len();
            for (file, sql) in pending {
                if let Err(e) = self.install_view_file(&admin, &file, &sql).await {
                    failed.push((file, sql, e));
                }
            }
            if failed.is_empty() || failed.len() == before {
                errors.extend(failed.into_iter().map(|(file, _, e)| ViewFileError {
                    file,
                    error: e.to_string(),
                }));
                break;
            }
            pending = failed.into_iter().map(|(f, s, _)| (f, s)).collect();
        }
        let present: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        self.storage().commit_catalog(|m| {
            m.views.retain(|v| {
                v.file
                    .as_ref()
                    .is_none_or(|f| present.contains(f) || v.tenant_id.is_some())
            });
            Ok(())
        })?;
        Ok(errors)
    }

    async fn install_view_file(&self, admin: &Principal, file: &str, sql: &str) -> Result<()> {
        let ctx = self.session(None)?;
        let plan = ctx.state().create_logical_plan(sql).await?;
        if !matches!(plan, LogicalPlan::Ddl(DdlStatement::CreateView(_))) {
            return Err(invalid("the file must hold one CREATE VIEW statement"));
        }
        apply(self, admin, &ctx, &plan, Some(file)).await?;
        Ok(())
    }
}
