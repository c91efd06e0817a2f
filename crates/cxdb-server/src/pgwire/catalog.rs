//! Catalog queries of PostgreSQL clients that DataFusion cannot plan as
//! written, rewritten before planning. Only statements that read a
//! `pg_catalog` table are touched, so user queries on `events` and the
//! views are never changed.
//!
//! SQLAlchemy's inspector (`get_columns`, `get_pk_constraint`,
//! `get_indexes`, `get_schema_names`, `get_view_definition`) is what these
//! rewrites were written for:
//!
//! - a scalar subquery reading `pg_attrdef` or `pg_sequence` (always empty
//!   in cxdb: no defaults, no sequences) is NULL;
//! - a correlated scalar subquery selecting one non-aggregate expression
//!   (it names a column of a table not in its own FROM) becomes one
//!   selecting `max(expression)`: DataFusion plans a correlated scalar
//!   subquery only when it is aggregated ("must be aggregated to return at
//!   most one row"). The catalog lookups clients write this way find one
//!   row or none, for which `max` is the identity;
//! - `generate_subscripts(array, dim)` (a set-returning function) becomes
//!   `unnest(generate_series(1, array_length(array, dim)))`;
//! - `LIKE … ESCAPE 'c'` with another escape character than the backslash
//!   (DataFusion's only one) has its pattern translated by
//!   `cxdb_like_escape(pattern, 'c')` (functions.rs), at run time, since
//!   the pattern is often a bound parameter;
//! - `pg_get_viewdef(pg_class.oid)` becomes a `CASE` on `pg_class.relname`
//!   answering each view's `SELECT` (the views of the connection's session,
//!   predefined and custom).

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    JoinOperator, ObjectName, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    TableWithJoins, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `statement` as DataFusion can plan it, when it reads `pg_catalog` and
/// needed a change; `None` otherwise.
pub(crate) async fn rewrite(statement: &Statement, ctx: &SessionContext) -> Option<Statement> {
    let mut probe = Probe::default();
    let _ = Visit::visit(statement, &mut probe);
    if !probe.reads_pg_catalog {
        return None;
    }
    let views = if probe.viewdef {
        view_definitions(ctx).await
    } else {
        BTreeMap::new()
    };
    let mut rewritten = statement.clone();
    let mut rewriter = Rewriter {
        views,
        changed: false,
    };
    let _ = VisitMut::visit(&mut rewritten, &mut rewriter);
    rewriter.changed.then_some(rewritten)
}

/// What a statement reads and calls.
#[derive(Default)]
struct Probe {
    reads_pg_catalog: bool,
    viewdef: bool,
}

impl Visitor for Probe {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let parts = relation.0.iter().filter_map(|p| p.as_ident()).count();
        let schema = relation
            .0
            .iter()
            .rev()
            .nth(1)
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase());
        if parts >= 2 && schema.as_deref() == Some("pg_catalog") {
            self.reads_pg_catalog = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr
            && function_name(&f.name).as_deref() == Some("pg_get_viewdef")
        {
            self.viewdef = true;
        }
        ControlFlow::Continue(())
    }
}

/// The last part of a function's name, lower-cased (`pg_catalog.f` is `f`).
fn function_name(name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
}

/// The `SELECT` of every view of the session's default schema, by name.
async fn view_definitions(ctx: &SessionContext) -> BTreeMap<String, String> {
    let options = ctx.state().config().options().catalog.clone();
    let Some(schema) = ctx
        .catalog(&options.default_catalog)
        .and_then(|c| c.schema(&options.default_schema))
    else {
        return BTreeMap::new();
    };
    let mut views = BTreeMap::new();
    for name in schema.table_names() {
        let Ok(Some(table)) = schema.table(&name).await else {
            continue;
        };
        // Views, and the maintained views (whose provider is not a ViewTable).
        let Some(definition) = table
            .get_table_definition()
            .filter(|_| table.table_type() == TableType::View)
        else {
            continue;
        };
        views.insert(name, view_select(definition));
    }
    views
}

/// The query of a `CREATE VIEW … AS query` text (or the text itself).
fn view_select(definition: &str) -> String {
    match Parser::parse_sql(&PostgreSqlDialect {}, definition).as_deref() {
        Ok([Statement::CreateView(view)]) => view.query.to_string(),
        _ => definition.to_string(),
    }
}

struct Rewriter {
    views: BTreeMap<String, String>,
    changed: bool,
}

/// Aggregates whose result is already one row.
const AGGREGATES: &[&str] = &[
    "max",
    "min",
    "count",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "json_agg",
    "every",
];

/// `sql` as an expression (built from displayed parts of a parsed one).
fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// The plain arguments of a function call.
fn plain_args(args: &FunctionArguments) -> Option<Vec<&Expr>> {
    match args {
        FunctionArguments::List(list) if list.clauses.is_empty() => list
            .args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// A single-quoted string literal's value.
fn string_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

impl Rewriter {
    /// `(SELECT e FROM …)` → `(SELECT max(e) FROM …)`.
    fn aggregate_scalar_subquery(&mut self, expr: &mut Expr) {
        let Expr::Subquery(query) = expr else { return };
        if query.limit_clause.is_some() || query.fetch.is_some() {
            return;
        }
        let SetExpr::Select(select) = query.body.as_mut() else {
            return;
        };
        let grouped = match &select.group_by {
            GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
            GroupByExpr::All(_) => true,
        };
        if grouped || select.having.is_some() || select.distinct.is_some() {
            return;
        }
        if select.from.iter().any(reads_empty_table) {
            // The statement's parameters stay in the plan (the client binds
            // them all), in a branch never taken.
            let params = placeholders(query);
            let null = if params.is_empty() {
                "CAST(NULL AS TEXT)".to_string()
            } else {
                let params: Vec<String> = params
                    .iter()
                    .map(|p| format!("CAST({p} AS TEXT)"))
                    .collect();
                format!("CASE WHEN false THEN concat({}) END", params.join(", "))
            };
            if let Some(null) = parse_expr(&null) {
                *expr = null;
                self.changed = true;
            }
            return;
        }
        // An uncorrelated subquery plans as it is; leave it.
        if !references_outer(select) {
            return;
        }
        let [item] = select.projection.as_mut_slice() else {
            return;
        };
        let inner = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return,
        };
        if let Expr::Function(f) = inner
            && function_name(&f.name).is_some_and(|n| AGGREGATES.contains(&n.as_str()))
        {
            return;
        }
        let Some(wrapped) = parse_expr(&format!("max({inner})")) else {
            return;
        };
        *inner = wrapped;
        self.changed = true;
        // Conditions on the outer row alone (`WHERE outer.flag AND …`) are
        // correlated predicates DataFusion cannot pull out of an aggregate;
        // they decide whether the subquery runs at all, so they move to a
        // CASE around it.
        let tables = inner_tables(&select.from);
        let Some(selection) = select.selection.take() else {
            return;
        };
        let (outer, kept): (Vec<Expr>, Vec<Expr>) = conjuncts(selection)
            .into_iter()
            .partition(|c| is_outer_only(c, &tables));
        select.selection = kept.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::And,
            right: Box::new(b),
        });
        if outer.is_empty() {
            return;
        }
        let condition = outer
            .iter()
            .map(|c| format!("({c})"))
            .collect::<Vec<_>>()
            .join(" AND ");
        if let Some(guarded) = parse_expr(&format!("CASE WHEN {condition} THEN {expr} END")) {
            *expr = guarded;
        }
    }

    /// `generate_subscripts(a, d)` → `unnest(generate_series(1, array_length(a, d)))`;
    /// `pg_get_viewdef(pg_class.oid)` → the view's query by `relname`.
    fn function(&mut self, expr: &mut Expr) {
        let Expr::Function(f) = expr else { return };
        let Some(name) = function_name(&f.name) else {
            return;
        };
        let Some(args) = plain_args(&f.args) else {
            return;
        };
        let replacement = match (name.as_str(), args.as_slice()) {
            ("generate_subscripts", [array, dim]) => parse_expr(&format!(
                "unnest(generate_series(1, CAST(array_length({array}, {dim}) AS BIGINT)))"
            )),
            ("pg_get_viewdef", [Expr::CompoundIdentifier(parts), ..])
                if parts.len() >= 2
                    && parts[parts.len() - 1].value.eq_ignore_ascii_case("oid")
                    && parts[parts.len() - 2]
                        .value
                        .eq_ignore_ascii_case("pg_class") =>
            {
                let mut relname = parts.clone();
                if let Some(last) = relname.last_mut() {
                    last.value = "relname".into();
                }
                let relname = Expr::CompoundIdentifier(relname);
                let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
                let arms: String = self
                    .views
                    .iter()
                    .map(|(view, sql)| format!(" WHEN {} THEN {}", quote(view), quote(sql)))
                    .collect();
                if arms.is_empty() {
                    parse_expr("CAST(NULL AS TEXT)")
                } else {
                    parse_expr(&format!("CASE {relname}{arms} END"))
                }
            }
            _ => None,
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
            self.changed = true;
        }
    }

    /// `x LIKE p ESCAPE '/'` → `x LIKE cxdb_like_escape(p, '/')`.
    fn like_escape(&mut self, expr: &mut Expr) {
        let (pattern, escape_char) = match expr {
            Expr::Like {
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                ..
            } => (pattern, escape_char),
            _ => return,
        };
        let Some(escape) = escape_char.as_ref().and_then(|v| match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        }) else {
            return;
        };
        if escape == "\\" {
            return;
        }
        let translated = match string_literal(pattern) {
            Some(literal) => parse_expr(&format!(
                "'{}'",
                super::functions::like_pattern_to_backslash(literal, &escape).replace('\'', "''")
            )),
            None => parse_expr(&format!(
                "cxdb_like_escape({pattern}, '{}')",
                escape.replace('\'', "''")
            )),
        };
        if let Some(translated) = translated {
            **pattern = translated;
            *escape_char = None;
            self.changed = true;
        }
    }
}

/// The parameters (`$n`, or `$n::type` as written) a query uses.
fn placeholders(query: &Query) -> Vec<String> {
    #[derive(Default)]
    struct Collect {
        found: Vec<String>,
        seen: Vec<String>,
    }
    fn placeholder(expr: &Expr) -> Option<&str> {
        match expr {
            Expr::Value(v) => match &v.value {
                Value::Placeholder(p) => Some(p),
                _ => None,
            },
            _ => None,
        }
    }
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            let (name, written) = match expr {
                Expr::Cast { expr: inner, .. } => match placeholder(inner) {
                    Some(p) => (p.to_string(), expr.to_string()),
                    None => return ControlFlow::Continue(()),
                },
                other => match placeholder(other) {
                    Some(p) => (p.to_string(), p.to_string()),
                    None => return ControlFlow::Continue(()),
                },
            };
            if !self.seen.contains(&name) {
                self.seen.push(name);
                self.found.push(written);
            }
            ControlFlow::Continue(())
        }
    }
    let mut collect = Collect::default();
    let _ = Visit::visit(query, &mut collect);
    collect.found
}

/// `pg_catalog` tables cxdb always leaves empty: no column has a default,
/// none owns a sequence.
const EMPTY_TABLES: &[&str] = &["pg_attrdef", "pg_sequence"];

/// Whether a FROM item's rows come from an always-empty table: its first
/// table or one inner-joined to it is.
fn reads_empty_table(from: &TableWithJoins) -> bool {
    let empty = |factor: &TableFactor| match factor {
        TableFactor::Table { name, .. } => {
            function_name(name).is_some_and(|n| EMPTY_TABLES.contains(&n.as_str()))
        }
        _ => false,
    };
    empty(&from.relation)
        || from.joins.iter().any(|j| {
            matches!(
                j.join_operator,
                JoinOperator::Join(_) | JoinOperator::Inner(_)
            ) && empty(&j.relation)
        })
}

/// The names a subquery's own tables go by: aliases, else the table's
/// name, qualified and not.
fn inner_tables(from: &[TableWithJoins]) -> Vec<String> {
    let mut names = Vec::new();
    let factors = from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for factor in factors {
        match factor {
            TableFactor::Table {
                alias: Some(alias), ..
            }
            | TableFactor::Derived {
                alias: Some(alias), ..
            } => names.push(alias.name.value.to_ascii_lowercase()),
            TableFactor::Table { name, .. } => {
                names.push(name.to_string().to_ascii_lowercase());
                if let Some(last) = function_name(name) {
                    names.push(last);
                }
            }
            _ => {}
        }
    }
    names
}

/// Whether a subquery's select list or WHERE names a column of a table
/// that is not its own (a correlated subquery).
fn references_outer(select: &Select) -> bool {
    struct Tables(Vec<String>);
    impl Visitor for Tables {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            self.0.extend(inner_tables(&[TableWithJoins {
                relation: factor.clone(),
                joins: vec![],
            }]));
            ControlFlow::Continue(())
        }
    }
    struct Outer<'a>(&'a [String], bool);
    impl Visitor for Outer<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr
                && parts.len() >= 2
            {
                let qualifier = parts[..parts.len() - 1]
                    .iter()
                    .map(|p| p.value.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(".");
                if !self.0.contains(&qualifier) {
                    self.1 = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut tables = Tables(Vec::new());
    let _ = Visit::visit(select, &mut tables);
    let mut outer = Outer(&tables.0, false);
    let _ = Visit::visit(select, &mut outer);
    outer.1
}

/// `a AND b AND c` as `[a, b, c]`.
fn conjuncts(expr: Expr) -> Vec<Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(*left);
            all.extend(conjuncts(*right));
            all
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            conjuncts(*inner)
        }
        other => vec![other],
    }
}

/// Whether `expr` names columns of the outer query only (and at least one).
fn is_outer_only(expr: &Expr, inner: &[String]) -> bool {
    struct Refs<'a> {
        inner: &'a [String],
        outer: usize,
        other: bool,
    }
    impl Visitor for Refs<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_) | Expr::Subquery(_) | Expr::Exists { .. } => {
                    self.other = true;
                }
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let qualifier = parts[..parts.len() - 1]
                        .iter()
                        .map(|p| p.value.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join(".");
                    if self.inner.contains(&qualifier) {
                        self.other = true;
                    } else {
                        self.outer += 1;
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut refs = Refs {
        inner,
        outer: 0,
        other: false,
    };
    let _ = Visit::visit(expr, &mut refs);
    refs.outer > 0 && !refs.other
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.aggregate_scalar_subquery(expr);
        self.function(expr);
        self.like_escape(expr);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rewritten(sql: &str) -> Option<String> {
        let ctx = SessionContext::new();
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .remove(0);
        rewrite(&statement, &ctx).await.map(|s| s.to_string())
    }

    #[tokio::test]
    async fn only_catalog_queries_are_rewritten() {
        assert_eq!(
            rewritten("SELECT (SELECT x FROM t WHERE t.a = e.a) FROM events e").await,
            None
        );
        assert_eq!(
            rewritten("SELECT nspname FROM pg_catalog.pg_namespace").await,
            None
        );
    }

    #[tokio::test]
    async fn scalar_subqueries_are_aggregated() {
        let sql = "SELECT CASE WHEN a.attcollation <> 0 THEN (SELECT t.typname \
                   FROM pg_catalog.pg_type t WHERE a.attisdropped AND t.oid = a.atttypid) END, \
                   (SELECT count(*) FROM pg_catalog.pg_type), \
                   (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = $1::INTEGER) \
                   FROM pg_catalog.pg_attribute a";
        let got = rewritten(sql).await.unwrap_or_default();
        assert!(
            got.contains(
                "THEN CASE WHEN (a.attisdropped) THEN (SELECT max(t.typname) \
                 FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) END END"
            ),
            "{got}"
        );
        assert!(got.contains("SELECT count(*) FROM"), "{got}");
        // pg_attrdef is always empty; its parameter stays in the plan.
        assert!(
            got.contains("CASE WHEN false THEN concat(CAST($1::INTEGER AS TEXT)) END"),
            "{got}"
        );
    }

    #[tokio::test]
    async fn generate_subscripts_and_like_escape() {
        let got = rewritten(
            "SELECT generate_subscripts(i.indkey, 1) FROM pg_catalog.pg_index i \
             WHERE 'x' NOT LIKE $1 || '%' ESCAPE '/' AND 'y' LIKE 'pg/_%' ESCAPE '/'",
        )
        .await
        .unwrap_or_default();
        assert!(
            got.contains("unnest(generate_series(1, CAST(array_length(i.indkey, 1) AS BIGINT)))"),
            "{got}"
        );
        assert!(
            got.contains("NOT LIKE cxdb_like_escape($1 || '%', '/')"),
            "{got}"
        );
        assert!(got.contains("LIKE 'pg\\_%'"), "{got}");
        assert!(!got.contains("ESCAPE"), "{got}");
    }
}
