//! What the host verifies in a component's answer before trusting it. A
//! component that fails these checks is treated like one that trapped.

use super::bindings::types::{Decision, Order, Quote, Violation};
use crate::domain::text::{Lines, refused_character};

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
        for (text, lines) in
            [(&violation.code, Lines::One), (&violation.field, Lines::One), (&violation.message, Lines::Many)]
        {
            checked_text(text, lines, &format!("violation {index}"))?;
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
    quote.notes.iter().try_for_each(|note| checked_text(note, Lines::Many, "quote note"))
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
                checked_text(text, Lines::One, name)?;
            }
            Ok(())
        }
        Decision::Hold(reason) | Decision::Reject(reason) => {
            if reason.trim().is_empty() {
                return Err("hold or reject decision gives no reason".into());
            }
            checked_text(reason, Lines::Many, "reason")
        }
    }
}

/// Bounded in size, and free of the control characters the service does
/// not store (see [`crate::domain::text`]).
fn checked_text(text: &str, lines: Lines, what: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT {
        return Err(format!("{what} is {} bytes long, at most {MAX_TEXT} allowed", text.len()));
    }
    match refused_character(text, lines) {
        Some(c) => Err(format!("{what} holds the control character U+{:04X}", u32::from(c))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bindings::types::{LineItem, PricedLine, Shipment};

    fn order() -> Order {
        let item = |product_id, unit_price, quantity| LineItem {
            product_id,
            sku: String::new(),
            name: String::new(),
            unit_price,
            quantity,
        };
        Order {
            id: None,
            user_id: 1,
            currency: "EUR".into(),
            items: vec![item(1, 500, 2), item(2, 250, 1)],
            attributes: vec![],
        }
    }

    fn good_quote() -> Quote {
        let line = |product_id, unit_price, quantity: u32| PricedLine {
            product_id,
            quantity,
            unit_price,
            line_total: unit_price * u64::from(quantity),
        };
        Quote {
            lines: vec![line(1, 500, 2), line(2, 250, 1)],
            subtotal: 1250,
            discount: 250,
            tax: 80,
            shipping: 499,
            total: 1579,
            currency: "EUR".into(),
            notes: vec![],
        }
    }

    #[test]
    fn a_consistent_quote_passes() {
        assert_eq!(quote(&order(), &good_quote()), Ok(()));
    }

    #[test]
    fn every_inconsistency_is_named() {
        type Breakage = fn(&mut Quote);
        let cases: [(Breakage, &str); 6] = [
            (|q| q.total += 1, "total"),
            (|q| q.subtotal += 1, "subtotal"),
            (|q| q.discount = 2000, "discount"),
            (|q| q.currency = "USD".into(), "currency"),
            (|q| q.lines[1].line_total = 1, "line total"),
            (|q| q.lines.truncate(1), "lines"),
        ];
        for (break_it, word) in cases {
            let mut broken = good_quote();
            break_it(&mut broken);
            let reason = quote(&order(), &broken).unwrap_err();
            assert!(reason.contains(word), "{reason:?} should mention {word}");
        }
    }

    fn ship(carrier: &str) -> Decision {
        Decision::Ship(Shipment {
            carrier: carrier.into(),
            service: "s".into(),
            warehouse: "w".into(),
            estimated_days: 1,
        })
    }

    #[test]
    fn decisions_and_violations_need_their_texts() {
        assert!(decision(&ship("dhl")).is_ok());
        assert!(decision(&ship(" ")).is_err());
        assert!(decision(&Decision::Hold(String::new())).is_err());
        assert!(decision(&Decision::Reject("x".repeat(2000))).is_err());
        let violation = |code: &str| Violation { code: code.into(), field: String::new(), message: String::new() };
        assert!(violations(&[violation("a")]).is_ok());
        assert!(violations(&[violation("")]).is_err());
    }

    #[test]
    fn texts_the_store_could_not_hold_are_refused() {
        let error = decision(&Decision::Hold("held\0".into())).unwrap_err();
        assert!(error.contains("reason") && error.contains("U+0000"), "{error}");
        assert!(decision(&Decision::Reject("two\nlines\tand a tab".into())).is_ok(), "free text keeps line breaks");
        assert!(decision(&ship("dhl\n")).unwrap_err().contains("carrier"), "a carrier is one line");
        let mut noted = good_quote();
        noted.notes.push("bell\u{7}".into());
        assert!(quote(&order(), &noted).unwrap_err().contains("quote note"));
        let message = Violation { code: "c".into(), field: String::new(), message: "\u{0}".into() };
        assert!(violations(&[message]).is_err());
    }
}
