//! What the host verifies in a component's answer before trusting it. A
//! component that fails these checks is treated like one that trapped.

use super::bindings::types::{Decision, Order, Quote, Violation};

/// Most violations one answer may carry.
const MAX_VIOLATIONS: usize = 1000;
/// Longest text field in an answer.
const MAX_TEXT: usize = 1024;

/// Checks a list of violations: bounded in count and text size, codes present.
pub(crate) fn violations(violations: &[Violation]) -> Result<(), String> {
    if violations.len() > MAX_VIOLATIONS {
        return Err(format!("{} violations, at most {MAX_VIOLATIONS} allowed", violations.len()));
    }
    for (index, violation) in violations.iter().enumerate() {
        if violation.code.is_empty() {
            return Err(format!("violation {index} has an empty code"));
        }
        for text in [&violation.code, &violation.field, &violation.message] {
            bounded_text(text, &format!("violation {index}"))?;
        }
    }
    Ok(())
}

/// Checks that a quote prices exactly the order's lines and adds up.
pub(crate) fn quote(order: &Order, quote: &Quote) -> Result<(), String> {
    if quote.currency != order.currency {
        return Err(format!("quote currency {:?} differs from the order's {:?}", quote.currency, order.currency));
    }
    if quote.lines.len() != order.items.len() {
        return Err(format!("quote has {} lines for {} order items", quote.lines.len(), order.items.len()));
    }
    let mut subtotal: u64 = 0;
    for (index, (line, item)) in quote.lines.iter().zip(&order.items).enumerate() {
        if line.product_id != item.product_id || line.quantity != item.quantity {
            return Err(format!("quote line {index} does not match order item {index}"));
        }
        let expected = line.unit_price.checked_mul(u64::from(line.quantity));
        if expected != Some(line.line_total) {
            return Err(format!("quote line {index}: line total is not unit price times quantity"));
        }
        subtotal = subtotal.checked_add(line.line_total).ok_or_else(|| "quote subtotal overflows".to_string())?;
    }
    if subtotal != quote.subtotal {
        return Err(format!("quote subtotal {} is not the sum of its lines ({subtotal})", quote.subtotal));
    }
    if quote.discount > quote.subtotal {
        return Err("quote discount exceeds its subtotal".into());
    }
    let total =
        (quote.subtotal - quote.discount).checked_add(quote.tax).and_then(|sum| sum.checked_add(quote.shipping));
    if total != Some(quote.total) {
        return Err(format!("quote total {} is not subtotal - discount + tax + shipping", quote.total));
    }
    if quote.notes.len() > 100 {
        return Err("quote has more than 100 notes".into());
    }
    quote.notes.iter().try_for_each(|note| bounded_text(note, "quote note"))
}

/// Checks that a decision names what it must.
pub(crate) fn decision(decision: &Decision) -> Result<(), String> {
    match decision {
        Decision::Ship(shipment) => {
            for (name, text) in
                [("carrier", &shipment.carrier), ("service", &shipment.service), ("warehouse", &shipment.warehouse)]
            {
                if text.trim().is_empty() {
                    return Err(format!("ship decision has an empty {name}"));
                }
                bounded_text(text, name)?;
            }
            Ok(())
        }
        Decision::Hold(reason) | Decision::Reject(reason) => {
            if reason.trim().is_empty() {
                return Err("hold or reject decision gives no reason".into());
            }
            bounded_text(reason, "reason")
        }
    }
}

fn bounded_text(text: &str, what: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT {
        return Err(format!("{what} is {} bytes long, at most {MAX_TEXT} allowed", text.len()));
    }
    Ok(())
}
