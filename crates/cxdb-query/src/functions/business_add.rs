//! `business_add(start, seconds, calendar_id [, tenant_id]) -> TIMESTAMP(µs,
//! UTC)`: the instant at which `seconds` business seconds have elapsed since
//! `start` (rules in [`super::business_clock`]). Typical use: an SLA due time,
//! `business_add(created_at, first_response_s, calendar_id)`.
//!
//! * The earliest such instant: landing exactly on a closing time gives the
//!   closing time, not the next opening; `seconds = 0` gives `start`.
//! * Negative `seconds` count backwards (the latest instant `t <= start`
//!   with `business_seconds(t, start) = -seconds`).
//! * `seconds` is rounded to the microsecond; then
//!   `business_seconds(start, business_add(start, s, c), c) = s` exactly.
//! * NULL `start` or `seconds` → NULL; NULL `calendar_id` → `start + seconds`
//!   (24×7); tenant resolution and errors as for `business_seconds`.

use std::sync::Arc;

use arrow::array::{Array, TimestampMicrosecondBuilder};
use arrow::datatypes::DataType;
use datafusion::common::cast::{as_float64_array, as_timestamp_microsecond_array};
use datafusion::common::{Result, exec_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{
    CalendarResolver, SnapshotRef, calendar_args, check_calendar_arity, coerce_float, coerce_text,
    coerce_timestamp, output, timestamp_utc,
};

const NAME: &str = "business_add";
const USAGE: &str = "start, seconds, calendar_id [, tenant_id]";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BusinessAdd {
    signature: Signature,
    snapshot: SnapshotRef,
}

impl BusinessAdd {
    pub(crate) fn new(snapshot: SnapshotRef) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            snapshot,
        }
    }
}

impl ScalarUDFImpl for BusinessAdd {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(timestamp_utc())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_calendar_arity(NAME, arg_types.len(), USAGE)?;
        let mut out = vec![
            coerce_timestamp(NAME, "start", &arg_types[0])?,
            coerce_float(NAME, "seconds", &arg_types[1])?,
            coerce_text(NAME, "calendar_id", &arg_types[2])?,
        ];
        if let Some(t) = arg_types.get(3) {
            out.push(coerce_text(NAME, "tenant_id", t)?);
        }
        Ok(out)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        check_calendar_arity(NAME, args.args.len(), USAGE)?;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let start = as_timestamp_microsecond_array(&arrays[0])?;
        let seconds = as_float64_array(&arrays[1])?;
        let (calendar, tenant) = calendar_args(NAME, &arrays)?;
        let snapshot = self.snapshot.get();
        let mut resolver = CalendarResolver::new(NAME, &snapshot);
        let mut out = TimestampMicrosecondBuilder::with_capacity(start.len()).with_timezone("UTC");
        for row in 0..start.len() {
            if start.is_null(row) || seconds.is_null(row) {
                out.append_null();
                continue;
            }
            let (a, s) = (start.value(row), seconds.value(row));
            let t = match resolver.resolve(calendar, tenant, row)? {
                None => {
                    let micros = (s * 1e6).round();
                    if !micros.is_finite() || micros.abs() >= i64::MAX as f64 {
                        return Err(exec_datafusion_err!("{NAME}: {s} seconds is out of range"));
                    }
                    a.checked_add(micros as i64).ok_or_else(|| {
                        exec_datafusion_err!("{NAME}: timestamp out of the supported range")
                    })?
                }
                Some(clock) => clock
                    .add_seconds(a, s)
                    .map_err(|e| exec_datafusion_err!("{NAME}: {e}"))?,
            };
            out.append_value(t);
        }
        output(&args.args, Arc::new(out.finish()))
    }
}
