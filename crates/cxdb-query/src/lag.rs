//! `lag(x) OVER (PARTITION BY … ORDER BY …)`, vectorized.
//!
//! DataFusion evaluates a window function partition by partition: for each
//! partition a key, a slice, an evaluator and an output array. When the
//! partitions are small (a conversation's few assignments) that bookkeeping
//! is the whole cost: `lag(agent_id)` over 813,520 rows in ~270,000
//! conversations took 1.56 s of window computation at 10M events (the sort
//! before it 70 ms), twice DuckDB's whole query.
//!
//! A `Window` node whose functions are all `lag(x)` (offset 1, NULL
//! default, nulls respected) over one PARTITION BY and one non-empty ORDER
//! BY is planned as [`LagExec`] instead. Its input is hash-partitioned on
//! the partition keys and sorted by them and the order keys (required like
//! DataFusion's window operators require it: DataFusion adds the
//! repartition and the sort), so a batch's lag is the column shifted down
//! one row, NULL where a partition starts: one comparison of the key
//! columns with themselves shifted, one concat and one `nullif` per batch
//! and column. The last row of a batch is carried into the next.
//!
//! The rewrite ([`rewrite`]) is applied to the optimized logical plan by
//! the session's query planner, just before physical planning: no optimizer
//! rule ever sees the extension node. Anything else (`lead`, other offsets
//! or defaults, `IGNORE NULLS`, several windows in one node, keys of nested
//! types) is left to DataFusion.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBufferBuilder, RecordBatch, new_null_array,
};
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::{cast, concat, nullif, or};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, DataFusionError, Result, ScalarValue};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::{NullTreatment, WindowFunction, WindowFunctionParams};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, ExprSchemable, Extension, LogicalPlan, SortExpr, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore, WindowFunctionDefinition,
};
use datafusion::physical_expr::{
    EquivalenceProperties, LexRequirement, OrderingRequirements, PhysicalExpr, PhysicalSortExpr,
    PhysicalSortRequirement,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;

/// DataFusion's physical planner, with [`LagExec`] where it applies.
#[derive(Debug)]
pub(crate) struct Planner;

#[async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        create_physical_plan(logical_plan, session).await
    }
}

/// Plans `logical_plan` (optimized) with [`rewrite`] and [`LagPlanner`].
pub(crate) async fn create_physical_plan(
    logical_plan: &LogicalPlan,
    session: &dyn Session,
) -> Result<Arc<dyn ExecutionPlan>> {
    let plan = rewrite(logical_plan)?;
    DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(LagPlanner)])
        .create_physical_plan(&plan, session)
        .await
}

/// `plan` with every `Window` node [`LagExec`] can compute replaced by a
/// [`LagNode`] (subqueries included).
pub(crate) fn rewrite(plan: &LogicalPlan) -> Result<LogicalPlan> {
    let mut has_window = false;
    plan.apply_with_subqueries(|node| {
        has_window = matches!(node, LogicalPlan::Window(_));
        Ok(if has_window {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    if !has_window {
        return Ok(plan.clone());
    }
    plan.clone()
        .transform_up_with_subqueries(|node| {
            let LogicalPlan::Window(window) = &node else {
                return Ok(Transformed::no(node));
            };
            let computable = match shape(&window.window_expr) {
                Some(shape) => keys_comparable(&shape, window.input.schema())?,
                None => false,
            };
            if !computable {
                return Ok(Transformed::no(node));
            }
            let lag = LagNode {
                input: Arc::unwrap_or_clone(Arc::clone(&window.input)),
                window_expr: window.window_expr.clone(),
                schema: Arc::clone(&window.schema),
            };
            Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                node: Arc::new(lag),
            })))
        })
        .map(|t| t.data)
}

/// What a window node computes when [`LagExec`] can compute it: the lagged
/// expressions, in output order, and the one PARTITION BY and ORDER BY.
struct Shape<'a> {
    values: Vec<&'a Expr>,
    partition_by: &'a [Expr],
    order_by: &'a [SortExpr],
}

fn shape(window_expr: &[Expr]) -> Option<Shape<'_>> {
    let mut shape: Option<Shape<'_>> = None;
    for expr in window_expr {
        let (value, params) = lag_of(expr)?;
        match &mut shape {
            None => {
                shape = Some(Shape {
                    values: vec![value],
                    partition_by: &params.partition_by,
                    order_by: &params.order_by,
                });
            }
            Some(s) if s.partition_by == params.partition_by && s.order_by == params.order_by => {
                s.values.push(value);
            }
            Some(_) => return None,
        }
    }
    shape.filter(|s| !s.order_by.is_empty())
}

/// The lagged expression of `lag(x)`, `lag(x, 1)` or `lag(x, 1, NULL)`
/// respecting nulls, with its window.
fn lag_of(expr: &Expr) -> Option<(&Expr, &WindowFunctionParams)> {
    let expr = match expr {
        Expr::Alias(alias) => alias.expr.as_ref(),
        expr => expr,
    };
    let Expr::WindowFunction(function) = expr else {
        return None;
    };
    let WindowFunction { fun, params } = function.as_ref();
    let WindowFunctionDefinition::WindowUDF(udf) = fun else {
        return None;
    };
    if udf.name() != "lag"
        || params.filter.is_some()
        || params.distinct
        || params.null_treatment == Some(NullTreatment::IgnoreNulls)
    {
        return None;
    }
    let one = |e: &Expr| {
        matches!(e, Expr::Literal(v, _)
            if v.data_type().is_integer()
                && v.cast_to(&DataType::Int64).ok() == Some(ScalarValue::Int64(Some(1))))
    };
    let null = |e: &Expr| matches!(e, Expr::Literal(v, _) if v.is_null());
    match params.args.as_slice() {
        [value] => Some((value, params)),
        [value, offset] if one(offset) => Some((value, params)),
        [value, offset, default] if one(offset) && null(default) => Some((value, params)),
        _ => None,
    }
}

/// Whether the partition keys have types arrow's `distinct` compares.
fn keys_comparable(shape: &Shape<'_>, input: &DFSchemaRef) -> Result<bool> {
    for key in shape.partition_by {
        let ty = key.get_type(input.as_ref())?;
        let comparable = ty.is_primitive()
            || matches!(
                ty,
                DataType::Boolean
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
            );
        if !comparable {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A `Window` node [`LagExec`] computes: the same input, functions and
/// output schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LagNode {
    input: LogicalPlan,
    window_expr: Vec<Expr>,
    schema: DFSchemaRef,
}

impl PartialOrd for LagNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        // Plans have no order; equal nodes compare equal.
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for LagNode {
    fn name(&self) -> &str {
        "Lag"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.window_expr.clone()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Lag: ")?;
        for (i, expr) in self.window_expr.iter().enumerate() {
            write!(
                f,
                "{}{}",
                if i == 0 { "" } else { ", " },
                expr.schema_name()
            )?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let input = crate::only_input(inputs, "Lag")?;
        if shape(&exprs).is_none() {
            return Err(DataFusionError::Internal(
                "Lag computes only lag(x) over one window".into(),
            ));
        }
        Ok(Self {
            input,
            window_expr: exprs,
            schema: Arc::clone(&self.schema),
        })
    }
}

/// Plans [`LagNode`]s as [`LagExec`]s.
#[derive(Debug)]
pub(crate) struct LagPlanner;

#[async_trait]
impl ExtensionPlanner for LagPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(lag) = node.as_any().downcast_ref::<LagNode>() else {
            return Ok(None);
        };
        let ([logical], [physical]) = (logical_inputs, physical_inputs) else {
            return Err(DataFusionError::Internal("Lag takes one input".into()));
        };
        let shape = shape(&lag.window_expr)
            .ok_or_else(|| DataFusionError::Internal("Lag without lag(x)".into()))?;
        let schema = logical.schema();
        let expr = |e: &Expr| planner.create_physical_expr(e, schema, session, planning_ctx);
        let partition_by = shape.partition_by.iter().map(expr).collect::<Result<_>>()?;
        let order_by = shape
            .order_by
            .iter()
            .map(|s| {
                expr(&s.expr).map(|e| {
                    PhysicalSortExpr::new(
                        e,
                        arrow::compute::SortOptions::new(!s.asc, s.nulls_first),
                    )
                })
            })
            .collect::<Result<_>>()?;
        let values = shape.values.into_iter().map(expr).collect::<Result<_>>()?;
        Ok(Some(Arc::new(LagExec::try_new(
            Arc::clone(physical),
            partition_by,
            order_by,
            values,
            Arc::clone(lag.schema.inner()),
        )?)))
    }
}

/// Appends `lag(value)` of each value to its sorted input's rows.
#[derive(Debug)]
pub(crate) struct LagExec {
    input: Arc<dyn ExecutionPlan>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<PhysicalSortExpr>,
    values: Vec<Arc<dyn PhysicalExpr>>,
    /// The input's columns, then one per value.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl LagExec {
    fn try_new(
        input: Arc<dyn ExecutionPlan>,
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        order_by: Vec<PhysicalSortExpr>,
        values: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        if schema.fields().len() != input.schema().fields().len() + values.len() {
            return Err(DataFusionError::Internal(
                "Lag: the output has the input's columns and one per value".into(),
            ));
        }
        // The input's columns keep their places and their order.
        let eq_properties = EquivalenceProperties::new(Arc::clone(&schema))
            .extend(input.equivalence_properties().clone())?;
        // Row by row, carrying one row between batches: it emits as its
        // input does and is as bounded as its input.
        let properties = PlanProperties::new(
            eq_properties,
            input.output_partitioning().clone(),
            input.properties().emission_type,
            input.properties().boundedness,
        );
        Ok(Self {
            input,
            partition_by,
            order_by,
            values,
            schema,
            properties: Arc::new(properties),
        })
    }
}

impl DisplayAs for LagExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .skip(self.input.schema().fields().len())
            .map(|f| f.name().as_str())
            .collect();
        write!(f, "LagExec: [{}]", names.join(", "))
    }
}

impl ExecutionPlan for LagExec {
    fn name(&self) -> &str {
        "LagExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.partition_by.is_empty() {
            vec![Distribution::SinglePartition]
        } else {
            vec![Distribution::KeyPartitioned(self.partition_by.clone())]
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        // Partition keys in either direction (equal keys are adjacent), then
        // the order keys as written.
        let mut requirements: Vec<PhysicalSortRequirement> = self
            .partition_by
            .iter()
            .map(|key| PhysicalSortRequirement::new(Arc::clone(key), None))
            .collect();
        for sort in &self.order_by {
            if !requirements.iter().any(|r| r.expr.eq(&sort.expr)) {
                requirements.push(PhysicalSortRequirement::new(
                    Arc::clone(&sort.expr),
                    Some(sort.options),
                ));
            }
        }
        vec![LexRequirement::new(requirements).map(OrderingRequirements::new)]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for expr in self
            .partition_by
            .iter()
            .chain(self.order_by.iter().map(|s| &s.expr))
            .chain(&self.values)
        {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::try_new(
            crate::only_input(children, "LagExec")?,
            self.partition_by.clone(),
            self.order_by.clone(),
            self.values.clone(),
            Arc::clone(&self.schema),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let mut lag = Lagging {
            partition_by: self.partition_by.clone(),
            values: self.values.clone(),
            schema: Arc::clone(&self.schema),
            last: None,
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            input.map(move |batch| lag.next(batch?)),
        )))
    }
}

/// One output partition's state: the previous batch's last row.
struct Lagging {
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    values: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// Its partition keys and values, one-row arrays.
    last: Option<(Vec<ArrayRef>, Vec<ArrayRef>)>,
}

impl Lagging {
    fn next(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let eval = |exprs: &[Arc<dyn PhysicalExpr>]| -> Result<Vec<ArrayRef>> {
            exprs
                .iter()
                .map(|e| e.evaluate(&batch)?.into_array(rows))
                .collect()
        };
        let keys = eval(&self.partition_by)?;
        let values = eval(&self.values)?;
        // Row i starts a partition when its keys differ from row i - 1's;
        // row 0 compares with the previous batch's last row (none: the
        // first row of the partition's stream starts one).
        let mut first = self.last.is_none();
        let mut rest: Option<BooleanArray> = None;
        for (i, key) in keys.iter().enumerate() {
            if let Some((last, _)) = &self.last {
                first |= distinct(&last[i], &key.slice(0, 1))?.value(0);
            }
            if rows > 1 {
                let differs = distinct(&key.slice(1, rows - 1), &key.slice(0, rows - 1))?;
                rest = Some(match rest {
                    Some(r) => or(&r, &differs)?,
                    None => differs,
                });
            }
        }
        // `distinct` and `or` of non-null inputs have no nulls.
        let mut starts = BooleanBufferBuilder::new(rows);
        starts.append(first);
        match &rest {
            Some(rest) => starts.append_buffer(rest.values()),
            None => starts.append_n(rows - 1, false),
        }
        let starts = BooleanArray::new(starts.finish(), None);
        let mut columns = batch.columns().to_vec();
        let offset = columns.len();
        for (i, value) in values.iter().enumerate() {
            let before = match &self.last {
                Some((_, last)) => last[i].clone(),
                None => new_null_array(value.data_type(), 1),
            };
            let shifted = concat(&[before.as_ref(), value.slice(0, rows - 1).as_ref()])?;
            let lagged = nullif(&shifted, &starts)?;
            let field = self.schema.field(offset + i);
            columns.push(if lagged.data_type() == field.data_type() {
                lagged
            } else {
                cast(&lagged, field.data_type())?
            });
        }
        self.last = Some((
            keys.iter().map(|k| k.slice(rows - 1, 1)).collect(),
            values.iter().map(|v| v.slice(rows - 1, 1)).collect(),
        ));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// Small batches and three partitions, so partitions straddle batches
    /// and the sort merges.
    fn session(lag: bool, table: MemTable) -> SessionContext {
        let config = SessionConfig::new()
            .with_batch_size(64)
            .with_target_partitions(3);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if lag {
            state = state.with_query_planner(Arc::new(Planner));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("r", Arc::new(table))
            .unwrap_or_else(|e| panic!("{e}"));
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let plan = df
            .clone()
            .create_physical_plan()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let plan = displayable(plan.as_ref()).indent(true).to_string();
        let batches = df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows = pretty_format_batches(&batches)
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        (rows, plan)
    }

    #[tokio::test]
    async fn lag_by_hand() {
        // conversation, time, agent; by conversation and time:
        // a: 1 x, 2 y, 3 NULL, 4 w -> lag NULL, x, y, NULL
        // b: 1 z                  -> lag NULL
        let schema = Arc::new(Schema::new(vec![
            Field::new("c", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("agent", DataType::Utf8, true),
        ]));
        let batch = |c: Vec<&str>, ts: Vec<i64>, agent: Vec<Option<&str>>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(c)),
                    Arc::new(Int64Array::from(ts)),
                    Arc::new(StringArray::from(agent)),
                ],
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let table = MemTable::try_new(
            Arc::clone(&schema),
            vec![
                vec![batch(
                    vec!["a", "b", "a"],
                    vec![3, 1, 1],
                    vec![None, Some("z"), Some("x")],
                )],
                vec![batch(
                    vec!["a", "a"],
                    vec![4, 2],
                    vec![Some("w"), Some("y")],
                )],
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ctx = session(true, table);
        let (rows, plan) = run(
            &ctx,
            "SELECT c, ts, lag(agent) OVER (PARTITION BY c ORDER BY ts) AS prev FROM r ORDER BY c, ts",
        )
        .await;
        assert!(plan.contains("LagExec"), "{plan}");
        let expected = "\
+---+----+------+
| c | ts | prev |
+---+----+------+
| a | 1  |      |
| a | 2  | x    |
| a | 3  | y    |
| a | 4  |      |
| b | 1  |      |
+---+----+------+";
        assert_eq!(rows, expected);
    }

    /// 5,000 rows in batches of 97 over three partitions: two keys with
    /// NULLs (~600 partitions), a time with ties, values with NULLs.
    fn random_table() -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("t", DataType::Utf8, true),
            Field::new("c", DataType::Int64, true),
            Field::new("ts", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
            Field::new("n", DataType::Int32, true),
        ]));
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        let mut partitions = vec![Vec::new(), Vec::new(), Vec::new()];
        for (b, start) in (0..5_000_i64).step_by(97).enumerate() {
            let ids: Vec<i64> = (start..(start + 97).min(5_000)).collect();
            let t: Vec<Option<String>> = ids
                .iter()
                .map(|_| match next(4) {
                    0 => None,
                    k => Some(format!("t{k}")),
                })
                .collect();
            let c: Vec<Option<i64>> = ids
                .iter()
                .map(|_| (next(20) != 0).then(|| next(200) as i64))
                .collect();
            let ts: Vec<i64> = ids.iter().map(|_| next(50) as i64).collect();
            let v: Vec<Option<String>> = ids
                .iter()
                .map(|_| (next(5) != 0).then(|| format!("v{}", next(30))))
                .collect();
            let n: Vec<Option<i32>> = ids
                .iter()
                .map(|_| (next(4) != 0).then(|| next(1000) as i32))
                .collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(t)),
                    Arc::new(Int64Array::from(c)),
                    Arc::new(Int64Array::from(ts)),
                    Arc::new(StringArray::from(v)),
                    Arc::new(Int32Array::from(n)),
                ],
            )
            .unwrap_or_else(|e| panic!("{e}"));
            partitions[b % 3].push(batch);
        }
        MemTable::try_new(schema, partitions).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn equals_datafusions_window_and_leaves_the_rest_to_it() {
        let window = "OVER (PARTITION BY t, c ORDER BY ts, id)";
        let computed = [
            format!("SELECT id, lag(v) {window} AS a, lag(n, 1) {window} AS b FROM r"),
            "SELECT id, lag(v, 1, NULL) OVER (PARTITION BY c ORDER BY ts DESC, id DESC) AS a \
             FROM r"
                .to_string(),
            "SELECT id, lag(n) OVER (ORDER BY id) AS a FROM r".to_string(),
            // The benchmark's reassignments shape: a filter on the lag.
            "SELECT t, count(*) AS k FROM (SELECT t, v, lag(v) OVER (PARTITION BY t, c \
             ORDER BY ts, id) AS p FROM r WHERE n IS NOT NULL) AS x \
             WHERE p IS NOT NULL AND p <> v GROUP BY t"
                .to_string(),
            // In a subquery.
            format!(
                "SELECT t, count(*) AS k FROM r WHERE id IN \
                 (SELECT id FROM (SELECT id, lag(n) {window} AS p FROM r) AS x WHERE p > 500) \
                 GROUP BY t"
            ),
            // Two windows: two Window nodes, two LagExecs.
            "SELECT id, lag(v) OVER (PARTITION BY t ORDER BY id) AS a, \
             lag(n) OVER (PARTITION BY c ORDER BY ts, id) AS b FROM r"
                .to_string(),
        ];
        let left = [
            format!("SELECT id, lag(v) IGNORE NULLS {window} AS a FROM r"),
            format!("SELECT id, lag(v, 2) {window} AS a FROM r"),
            format!("SELECT id, lag(v, 1, 'none') {window} AS a FROM r"),
            format!("SELECT id, lead(v) {window} AS a FROM r"),
            format!("SELECT id, lag(v) {window} AS a, row_number() {window} AS b FROM r"),
        ];
        let with = session(true, random_table());
        let without = session(false, random_table());
        for (sql, rewritten) in computed
            .iter()
            .map(|q| (q, true))
            .chain(left.iter().map(|q| (q, false)))
        {
            let sql = format!("SELECT * FROM ({sql}) AS q ORDER BY 1, 2");
            let (rows, plan) = run(&with, &sql).await;
            let (expected, builtin_plan) = run(&without, &sql).await;
            assert_eq!(plan.contains("LagExec"), rewritten, "{sql}\n{plan}");
            assert!(!builtin_plan.contains("LagExec"));
            assert_eq!(rows, expected, "{sql}\n{plan}");
            assert!(
                rows.lines().count() > 4,
                "{sql}: too few rows to compare\n{rows}"
            );
        }
    }
}
