//! The customer population of a tenant and the identities (contact id,
//! email, phone) each channel reveals, so identity stitching has work to do.

use rand::Rng;
use rand::rngs::StdRng;

use crate::phrases::{EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES};

/// Customers per tenant.
const POOL: f64 = 20_000.0;

/// A customer index; low indices are drawn far more often, so some people
/// contact support (and order) again and again.
pub(crate) fn draw(rng: &mut StdRng) -> u64 {
    let u: f64 = rng.random();
    (POOL * u * u) as u64
}

/// What one conversation or order knows about its customer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub(crate) customer_id: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) phone: Option<String>,
}

pub(crate) fn email(k: u64) -> String {
    let first = FIRST_NAMES[(k % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[((k / 7) % LAST_NAMES.len() as u64) as usize];
    let domain = EMAIL_DOMAINS[((k / 3) % EMAIL_DOMAINS.len() as u64) as usize];
    format!("{first}.{last}{k}@{domain}")
}

/// E.164; a US, UK or German mobile.
pub(crate) fn phone(k: u64) -> String {
    match k % 3 {
        0 => format!("+1555{:07}", k % 10_000_000),
        1 => format!("+447700{:06}", k % 1_000_000),
        _ => format!("+49151{:07}", k % 10_000_000),
    }
}

/// The identity customer `k` shows on `channel`. Email channels know the
/// email, phone channels the number, chat-like channels a contact id and
/// usually the email. `new_contact` models a platform that created a fresh
/// contact record for a returning customer on another channel.
pub(crate) fn identity(rng: &mut StdRng, k: u64, channel: &str, new_contact: bool) -> Identity {
    let customer_id = Some(if new_contact {
        format!("cust-{k}-{channel}")
    } else {
        format!("cust-{k}")
    });
    let (p_email, p_phone) = match channel {
        "email" => (1.0, 0.0),
        "web_form" => (1.0, 0.3),
        "whatsapp" | "sms" | "voice" => (0.1, 1.0),
        _ => (0.7, 0.15),
    };
    let email = rng.random_bool(p_email).then(|| {
        let e = email(k);
        // Some systems keep the case the customer typed.
        if rng.random_bool(0.15) {
            capitalise_words(&e)
        } else {
            e
        }
    });
    let phone = rng.random_bool(p_phone).then(|| phone(k));
    Identity {
        customer_id,
        email,
        phone,
    }
}

fn capitalise_words(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        out.push(if start { c.to_ascii_uppercase() } else { c });
        start = matches!(c, '.' | '@');
    }
    out
}
