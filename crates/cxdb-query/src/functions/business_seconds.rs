//! `business_seconds(start, end, calendar_id [, tenant_id]) -> DOUBLE`: the
//! seconds of `[start, end)` that fall inside the calendar's opening hours
//! (rules in [`super::business_clock`]).
//!
//! * NULL `start` or `end` → NULL.
//! * NULL `calendar_id` → calendar seconds (24×7), `end - start`.
//! * `end < start` → the negated business seconds of `[end, start)`, like
//!   `end - start`; views that want a floor write `greatest(0, …)`.
//! * The tenant is the 4th argument when given and not NULL, else the
//!   session's tenant scope, else the only tenant with a calendar of that id;
//!   an unknown or ambiguous calendar is an execution error.

use std::sync::Arc;

use arrow::array::{Array, Float64Builder};
use arrow::datatypes::DataType;
use datafusion::common::cast::as_timestamp_microsecond_array;
use datafusion::common::{Result, exec_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{
    CalendarResolver, SnapshotRef, calendar_args, check_calendar_arity, coerce_text,
    coerce_timestamp, output,
};

const NAME: &str = "business_seconds";
const USAGE: &str = "start, end, calendar_id [, tenant_id]";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BusinessSeconds {
    signature: Signature,
    snapshot: SnapshotRef,
}

impl BusinessSeconds {
    pub(crate) fn new(snapshot: SnapshotRef) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            snapshot,
        }
    }
}

impl ScalarUDFImpl for BusinessSeconds {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_calendar_arity(NAME, arg_types.len(), USAGE)?;
        let mut out = vec![
            coerce_timestamp(NAME, "start", &arg_types[0])?,
            coerce_timestamp(NAME, "end", &arg_types[1])?,
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
        let end = as_timestamp_microsecond_array(&arrays[1])?;
        let (calendar, tenant) = calendar_args(NAME, &arrays)?;
        let snapshot = self.snapshot.get();
        let mut resolver = CalendarResolver::new(NAME, &snapshot);
        let mut out = Float64Builder::with_capacity(start.len());
        for row in 0..start.len() {
            if start.is_null(row) || end.is_null(row) {
                out.append_null();
                continue;
            }
            let (a, b) = (start.value(row), end.value(row));
            let seconds = match resolver.resolve(calendar, tenant, row)? {
                None => (i128::from(b) - i128::from(a)) as f64 / 1e6,
                Some(clock) => clock
                    .seconds(a, b)
                    .map_err(|e| exec_datafusion_err!("{NAME}: {e}"))?,
            };
            out.append_value(seconds);
        }
        output(&args.args, Arc::new(out.finish()))
    }
}
