//! `date_trunc` on UTC timestamps by arithmetic.
//!
//! DataFusion 55's `date_trunc` truncates to the hour or day with integer
//! arithmetic only when the timestamp has *no* time zone; a timestamp tagged
//! `"UTC"` — every timestamp in cxdb — goes through a `chrono-tz` conversion
//! per value. On 10M events `date_trunc('day', event_time)` took ~800 ms of
//! the 1.1 s of `GROUP BY event_type, date_trunc('day', event_time)`
//! (measured 2026-11-26 with DataFusion's Python bindings on the benchmark
//! lake: 1,093 ms with `date_trunc`, 291 ms with the same truncation done by
//! integer division).
//!
//! UTC has no daylight saving time and no offset, so truncating there is the
//! same as truncating the untagged value. [`UtcDateTrunc`] replaces the
//! built-in `date_trunc`: for a timestamp whose zone is UTC it hands
//! DataFusion's own implementation the value without its zone (which takes
//! the arithmetic path for every unit up to `day`; `week`, `month`, … keep
//! their calendar path) and tags the result `UTC` again. Every other call —
//! other zones, `TIME` values, NULL — goes to the built-in unchanged, so the
//! results are DataFusion's, bit for bit.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, make_array};
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions::datetime::date_trunc::DateTruncFunc;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
};

/// The built-in `date_trunc`, with the time zone `UTC` treated as no zone.
#[derive(Debug, PartialEq, Eq, Hash, Default)]
pub struct UtcDateTrunc {
    inner: DateTruncFunc,
}

impl UtcDateTrunc {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Whether `tz` names the zero offset.
fn is_utc(tz: &str) -> bool {
    [
        "UTC", "Etc/UTC", "Z", "+00:00", "+0000", "+00", "GMT", "Etc/GMT",
    ]
    .iter()
    .any(|name| tz.eq_ignore_ascii_case(name))
}

/// `data_type` with its time zone replaced by `tz`.
fn retagged_type(data_type: &DataType, tz: Option<Arc<str>>) -> DataType {
    match data_type {
        DataType::Timestamp(unit, _) => DataType::Timestamp(*unit, tz),
        other => other.clone(),
    }
}

/// `field` with its timestamp time zone replaced by `tz`.
fn retagged_field(field: &FieldRef, tz: Option<Arc<str>>) -> FieldRef {
    let data_type = retagged_type(field.data_type(), tz);
    Arc::new(field.as_ref().clone().with_data_type(data_type))
}

/// `value` with its timestamp time zone replaced by `tz` (no data copied).
fn retag(value: &ColumnarValue, tz: Option<Arc<str>>) -> Result<ColumnarValue> {
    Ok(match value {
        ColumnarValue::Array(array) => {
            let data_type = retagged_type(array.data_type(), tz);
            let data = array
                .to_data()
                .into_builder()
                .data_type(data_type)
                .build()?;
            ColumnarValue::Array(make_array(data) as ArrayRef)
        }
        ColumnarValue::Scalar(scalar) => ColumnarValue::Scalar(match scalar {
            ScalarValue::TimestampSecond(v, _) => ScalarValue::TimestampSecond(*v, tz),
            ScalarValue::TimestampMillisecond(v, _) => ScalarValue::TimestampMillisecond(*v, tz),
            ScalarValue::TimestampMicrosecond(v, _) => ScalarValue::TimestampMicrosecond(*v, tz),
            ScalarValue::TimestampNanosecond(v, _) => ScalarValue::TimestampNanosecond(*v, tz),
            other => other.clone(),
        }),
    })
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let zone = match args.args.get(1).map(|a| a.data_type()) {
            Some(DataType::Timestamp(_, Some(tz))) if is_utc(&tz) => tz,
            _ => return self.inner.invoke_with_args(args),
        };
        args.args[1] = retag(&args.args[1], None)?;
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = retagged_field(field, None);
        }
        args.return_field = retagged_field(&args.return_field, None);
        retag(&self.inner.invoke_with_args(args)?, Some(zone))
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::FunctionRegistry;
    use datafusion::prelude::SessionContext;

    /// The same truncations through the built-in and through the override
    /// give equal values and types — for UTC (the arithmetic path), another
    /// zone (the built-in path), scalars, NULLs, and negative times.
    #[tokio::test]
    async fn equals_the_built_in() -> Result<()> {
        let micros = [
            Some(1_767_225_600_000_000), // 2026-01-01 00:00:00
            Some(1_767_312_345_678_901), // 2026-01-02 00:05:45.678901
            None,
            Some(-1),                    // 1969-12-31 23:59:59.999999
            Some(1_774_400_000_123_456), // 2026-03-25 00:53:20.123456
        ];
        let builtin = SessionContext::new();
        let ours = SessionContext::new();
        ours.register_udf(datafusion::logical_expr::ScalarUDF::from(
            UtcDateTrunc::new(),
        ));
        for ctx in [&builtin, &ours] {
            for (name, tz) in [("utc", "UTC"), ("kathmandu", "Asia/Kathmandu")] {
                let array = TimestampMicrosecondArray::from(micros.to_vec()).with_timezone(tz);
                let batch = arrow::record_batch::RecordBatch::try_from_iter([(
                    "t",
                    Arc::new(array) as ArrayRef,
                )])?;
                ctx.register_batch(name, batch)?;
            }
        }
        let mut queries = Vec::new();
        for unit in [
            "microsecond",
            "millisecond",
            "second",
            "minute",
            "hour",
            "day",
            "week",
            "month",
            "quarter",
            "year",
        ] {
            for table in ["utc", "kathmandu"] {
                queries.push(format!(
                    "SELECT t, date_trunc('{unit}', t) AS d, arrow_typeof(date_trunc('{unit}', t)) AS ty FROM {table}"
                ));
            }
            queries.push(format!(
                "SELECT date_trunc('{unit}', TIMESTAMP '2026-03-29 01:30:00.5' AT TIME ZONE 'UTC') AS d"
            ));
        }
        queries.push("SELECT datetrunc('hour', t) AS d FROM utc".into());
        for sql in queries {
            let expected = pretty_format_batches(&builtin.sql(&sql).await?.collect().await?)?;
            let got = pretty_format_batches(&ours.sql(&sql).await?.collect().await?)?;
            assert_eq!(got.to_string(), expected.to_string(), "{sql}");
        }
        // And the override really is the one answering, under both names.
        for name in ["date_trunc", "datetrunc"] {
            let udf = ours.udf(name)?;
            assert!(udf.inner().is::<UtcDateTrunc>(), "{name}");
        }
        let batches = ours
            .sql("SELECT date_trunc('day', t) AS d FROM utc")
            .await?
            .collect()
            .await?;
        let d = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("a timestamp column");
        assert_eq!(d.timezone(), Some("UTC"));
        // 2026-01-02 00:05:45.678901 → 2026-01-02 00:00:00; -1 µs → 1969-12-31.
        assert_eq!(d.value(1), 1_767_312_000_000_000);
        assert_eq!(d.value(3), -86_400_000_000);
        Ok(())
    }
}
