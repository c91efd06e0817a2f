//! What the filters of a scan say about `tenant_id` and `event_time`, used
//! to skip partitions and files before anything is read.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};

use cxdb_model::time::day_of;

/// What a provider that prunes with [`ScanBounds`] answers DataFusion's
/// `supports_filters_pushdown`: every filter is used to skip data, and
/// DataFusion still applies each one to the rows.
pub fn inexact(filters: &[&Expr]) -> Vec<TableProviderFilterPushDown> {
    vec![TableProviderFilterPushDown::Inexact; filters.len()]
}

/// Bounds implied by a conjunction of filters. `None` means unconstrained.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanBounds {
    /// The scan can only match these tenants.
    pub tenants: Option<BTreeSet<String>>,
    /// Inclusive lower bound on event_time (epoch micros).
    pub min_time: Option<i64>,
    /// Inclusive upper bound on event_time (epoch micros).
    pub max_time: Option<i64>,
    /// A filter asks for given values of a column with a Bloom filter
    /// ([`cxdb_storage::lake::BLOOM_COLUMNS`]): `id = 'x'` or
    /// `id IN ('x', 'y')`. Such a scan is a drill-down that keeps a few
    /// rows of the row groups it reads.
    pub looks_up_id: bool,
}

impl ScanBounds {
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut b = Self::default();
        for f in filters {
            b.add(f);
        }
        b
    }

    /// The bounds of a scan: its pushed-down `filters`, narrowed to the
    /// session's tenant `scope`.
    pub fn of_scan(filters: &[Expr], scope: Option<&str>) -> Self {
        let mut b = Self::from_filters(filters);
        if let Some(tenant) = scope {
            b.scope_to(tenant);
        }
        b
    }

    /// Restricts to one tenant (a tenant-scoped session).
    pub fn scope_to(&mut self, tenant: &str) {
        let only: BTreeSet<String> = [tenant.to_string()].into();
        self.tenants = Some(match self.tenants.take() {
            Some(t) => t.intersection(&only).cloned().collect(),
            None => only,
        });
    }

    pub fn keeps_tenant(&self, tenant: &str) -> bool {
        self.tenants.as_ref().is_none_or(|t| t.contains(tenant))
    }

    pub fn keeps_day(&self, day: i32) -> bool {
        self.min_time.is_none_or(|t| day >= day_of(t))
            && self.max_time.is_none_or(|t| day <= day_of(t))
    }

    pub fn keeps_time_range(&self, min: i64, max: i64) -> bool {
        self.min_time.is_none_or(|t| max >= t) && self.max_time.is_none_or(|t| min <= t)
    }

    fn add(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.add(left);
                    self.add(right);
                    return;
                }
                let (column, op, value) = match (column_name(left), column_name(right)) {
                    (Some(c), None) => (c, *op, literal(right)),
                    (None, Some(c)) => (c, flip(*op), literal(left)),
                    _ => return,
                };
                let Some(value) = value else { return };
                match column {
                    "tenant_id" if op == Operator::Eq => {
                        if let Some(s) = as_string(&value) {
                            self.intersect_tenants([s].into());
                        }
                    }
                    "event_time" => {
                        if let Some(t) = as_micros(&value) {
                            self.bound_time(op, t);
                        }
                    }
                    c if op == Operator::Eq && is_bloom_column(c) => {
                        self.looks_up_id |= as_string(&value).is_some();
                    }
                    _ => {}
                }
            }
            Expr::InList(list)
                if !list.negated && column_name(&list.expr).is_some_and(is_bloom_column) =>
            {
                self.looks_up_id |= list
                    .list
                    .iter()
                    .all(|v| literal(v).as_ref().and_then(as_string).is_some());
            }
            Expr::InList(list) if !list.negated && column_name(&list.expr) == Some("tenant_id") => {
                let values: Option<BTreeSet<String>> = list
                    .list
                    .iter()
                    .map(|v| literal(v).as_ref().and_then(as_string))
                    .collect();
                if let Some(values) = values {
                    self.intersect_tenants(values);
                }
            }
            Expr::Between(b) if !b.negated && column_name(&b.expr) == Some("event_time") => {
                if let Some(lo) = literal(&b.low).as_ref().and_then(as_micros) {
                    self.bound_time(Operator::GtEq, lo);
                }
                if let Some(hi) = literal(&b.high).as_ref().and_then(as_micros) {
                    self.bound_time(Operator::LtEq, hi);
                }
            }
            _ => {}
        }
    }

    fn intersect_tenants(&mut self, values: BTreeSet<String>) {
        self.tenants = Some(match self.tenants.take() {
            Some(t) => t.intersection(&values).cloned().collect(),
            None => values,
        });
    }

    fn bound_time(&mut self, op: Operator, t: i64) {
        let raise = |cur: Option<i64>, v: i64| Some(cur.map_or(v, |c| c.max(v)));
        let lower = |cur: Option<i64>, v: i64| Some(cur.map_or(v, |c| c.min(v)));
        match op {
            Operator::Gt => self.min_time = raise(self.min_time, t.saturating_add(1)),
            Operator::GtEq => self.min_time = raise(self.min_time, t),
            Operator::Lt => self.max_time = lower(self.max_time, t.saturating_sub(1)),
            Operator::LtEq => self.max_time = lower(self.max_time, t),
            Operator::Eq => {
                self.min_time = raise(self.min_time, t);
                self.max_time = lower(self.max_time, t);
            }
            _ => {}
        }
    }
}

fn is_bloom_column(name: &str) -> bool {
    cxdb_storage::lake::BLOOM_COLUMNS.contains(&name)
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v.clone()),
        // A cast of a literal the planner did not fold (e.g. a string
        // compared with a timestamp column).
        Expr::Cast(c) => literal(&c.expr).and_then(|v| v.cast_to(c.field.data_type()).ok()),
        _ => None,
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        other => other,
    }
}

fn as_string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// A timestamp literal of any unit, as epoch microseconds (rounded so the
/// bound stays inclusive of every matching row).
fn as_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampMicrosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(t.div_euclid(1000)),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(us: i64) -> Expr {
        Expr::Literal(
            ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into())),
            None,
        )
    }

    #[test]
    fn tenant_and_time_bounds() {
        let b = ScanBounds::from_filters(&[
            col("tenant_id")
                .eq(lit("acme"))
                .and(col("event_time").gt_eq(ts(100))),
            ts(500).gt(col("event_time")),
            col("channel").eq(lit("chat")),
        ]);
        assert_eq!(b.tenants, Some(["acme".to_string()].into()));
        assert_eq!((b.min_time, b.max_time), (Some(100), Some(499)));

        let b = ScanBounds::from_filters(&[
            col("tenant_id").in_list(vec![lit("a"), lit("b")], false),
            col("tenant_id").eq(lit("b")),
            col("event_time").between(ts(10), ts(20)),
        ]);
        assert_eq!(b.tenants, Some(["b".to_string()].into()));
        assert_eq!((b.min_time, b.max_time), (Some(10), Some(20)));

        // OR and NOT IN say nothing usable.
        let b = ScanBounds::from_filters(&[
            col("tenant_id")
                .eq(lit("a"))
                .or(col("tenant_id").eq(lit("b"))),
            col("tenant_id").in_list(vec![lit("a")], true),
        ]);
        assert_eq!(b, ScanBounds::default());
    }

    #[test]
    fn drill_downs_by_id() {
        let looks_up = |f: Expr| ScanBounds::from_filters(&[f]).looks_up_id;
        assert!(looks_up(
            col("tenant_id")
                .eq(lit("acme"))
                .and(col("conversation_id").eq(lit("c1")))
        ));
        assert!(looks_up(lit("o1").eq(col("order_id"))));
        assert!(looks_up(
            col("customer_id").in_list(vec![lit("a"), lit("b")], false)
        ));
        // Not a lookup: other columns, other operators, a negated or
        // non-literal list, a disjunction.
        assert!(!looks_up(col("agent_id").eq(lit("a1"))));
        assert!(!looks_up(col("conversation_id").gt(lit("c1"))));
        assert!(!looks_up(col("ticket_id").in_list(vec![lit("t")], true)));
        assert!(!looks_up(
            col("ticket_id").in_list(vec![lit("t"), col("agent_id")], false)
        ));
        assert!(!looks_up(
            col("event_id")
                .eq(lit("e1"))
                .or(col("channel").eq(lit("chat")))
        ));
    }

    #[test]
    fn scope_intersects() {
        let mut b = ScanBounds::from_filters(&[col("tenant_id").eq(lit("other"))]);
        b.scope_to("acme");
        assert!(!b.keeps_tenant("other") && !b.keeps_tenant("acme"));
        let mut b = ScanBounds::default();
        b.scope_to("acme");
        assert!(b.keeps_tenant("acme") && !b.keeps_tenant("other"));
    }
}
