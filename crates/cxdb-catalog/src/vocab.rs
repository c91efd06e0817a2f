//! The slice of the SPEC §2 vocabulary the catalog validates against. Kept here rather
//! than taken from `cxdb-model` so the catalog does not pull in Arrow.

pub(crate) const CHANNELS: &[&str] = &[
    "chat",
    "email",
    "whatsapp",
    "messenger",
    "instagram",
    "sms",
    "voice",
    "web_form",
    "api",
    "slack",
];

pub(crate) const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];

/// Longest calendar or policy id we accept; ids appear in SQL tables and API paths.
pub(crate) const MAX_ID_CHARS: usize = 128;

/// `[a-z0-9][a-z0-9_-]{0,63}`
pub(crate) fn is_valid_tenant_id(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 64
        && ok(&b[0])
        && b[1..].iter().all(|c| ok(c) || *c == b'_' || *c == b'-')
}

pub(crate) fn check_tenant_id(s: &str) -> Result<(), String> {
    if is_valid_tenant_id(s) {
        Ok(())
    } else {
        Err(format!(
            "tenant id \"{s}\" does not match [a-z0-9][a-z0-9_-]{{0,63}}"
        ))
    }
}

pub(crate) fn check_id(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        Err(format!("{what} must not be empty"))
    } else if s.chars().count() > MAX_ID_CHARS || s.chars().any(char::is_control) {
        Err(format!(
            "{what} \"{}\" must be 1-{MAX_ID_CHARS} printable characters",
            s.escape_debug()
        ))
    } else {
        Ok(())
    }
}

pub(crate) fn check_one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{field} \"{value}\" is not one of {}",
            allowed.join(", ")
        ))
    }
}
