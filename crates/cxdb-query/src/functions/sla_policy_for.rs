//! `sla_policy_for(tenant_id, priority, channel) -> TEXT`: the `policy_id` of
//! the most specific SLA policy (SPEC §2 `sla_policies`, §3 SLA) of the
//! tenant that matches, or NULL when none does.
//!
//! A policy's NULL priority or channel means "any" and matches every value,
//! NULL included; a set one matches only an equal value (a NULL argument
//! matches only "any"). Specificity: priority and channel > priority only >
//! channel only > neither — priority ranks above channel because it is what
//! customers are promised per ticket. Ties go to the smallest `policy_id`.
//! NULL `tenant_id` → NULL; in a scoped session other tenants have no
//! policies.

use std::sync::Arc;

use arrow::array::{Array, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_datafusion_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{SnapshotRef, coerce_text, output};

const NAME: &str = "sla_policy_for";

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SlaPolicyFor {
    signature: Signature,
    snapshot: SnapshotRef,
}

impl SlaPolicyFor {
    pub(crate) fn new(snapshot: SnapshotRef) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            snapshot,
        }
    }
}

impl ScalarUDFImpl for SlaPolicyFor {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!(
                "{NAME} takes 3 arguments (tenant_id, priority, channel), got {}",
                arg_types.len()
            );
        }
        ["tenant_id", "priority", "channel"]
            .iter()
            .zip(arg_types)
            .map(|(arg, t)| coerce_text(NAME, arg, t))
            .collect()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = |i: usize| -> Result<&StringArray> {
            arrays
                .get(i)
                .and_then(|a| a.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| exec_datafusion_err!("{NAME}: argument {} is not Utf8", i + 1))
        };
        let (tenant, priority, channel) = (text(0)?, text(1)?, text(2)?);
        fn value(a: &StringArray, row: usize) -> Option<&str> {
            a.is_valid(row).then(|| a.value(row))
        }
        let snapshot = self.snapshot.get();
        let mut out = StringBuilder::with_capacity(tenant.len(), tenant.len() * 8);
        for row in 0..tenant.len() {
            let policy = value(tenant, row).and_then(|t| {
                snapshot.sla_policy_for(t, value(priority, row), value(channel, row))
            });
            out.append_option(policy.map(|p| p.policy_id.as_str()));
        }
        output(&args.args, Arc::new(out.finish()))
    }
}
