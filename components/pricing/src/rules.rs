//! The pricing arithmetic as plain functions: testable without a host and
//! benchmarked natively against the same logic running as a component.

use crate::bindings::orderly::rules::types::{Order, PricedLine, Quote, Violation};

/// Basis points in one whole (100 %).
const WHOLE: u128 = 10_000;

/// The component's settings, from its slot's `[config]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Tax rate in basis points (800 = 8 %).
    pub tax_rate_bp: u64,
    /// Shipping charge below the free-shipping threshold, in minor units.
    pub shipping_flat: u64,
    /// Discounted subtotal from which shipping is free, in minor units.
    pub free_shipping_threshold: u64,
    /// `(minimum total units, discount in basis points)`, any order.
    pub volume_tiers: Vec<(u64, u64)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tax_rate_bp: 0,
            shipping_flat: 499,
            free_shipping_threshold: 5000,
            volume_tiers: vec![(10, 500), (50, 1000)],
        }
    }
}

impl Settings {
    /// Reads settings through `get`; an invalid value is an error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let number = |key: &str| -> Result<Option<u64>, String> {
            get(key)
                .map(|text| text.trim().parse().map_err(|_| format!("setting {key} = {text:?} is not a whole number")))
                .transpose()
        };
        let defaults = Self::default();
        let volume_tiers = match get("volume_tiers") {
            Some(text) => parse_tiers(&text)?,
            None => defaults.volume_tiers,
        };
        let tax_rate_bp = number("tax_rate_bp")?.unwrap_or(defaults.tax_rate_bp);
        if u128::from(tax_rate_bp) > WHOLE {
            return Err(format!("setting tax_rate_bp = {tax_rate_bp} is above 10000 (100 %)"));
        }
        Ok(Self {
            tax_rate_bp,
            shipping_flat: number("shipping_flat")?.unwrap_or(defaults.shipping_flat),
            free_shipping_threshold: number("free_shipping_threshold")?.unwrap_or(defaults.free_shipping_threshold),
            volume_tiers,
        })
    }
}

/// Parses `"10:500,50:1000"` (units:basis points, comma separated).
fn parse_tiers(text: &str) -> Result<Vec<(u64, u64)>, String> {
    text.split(',')
        .filter(|tier| !tier.trim().is_empty())
        .map(|tier| {
            let (units, bp) =
                tier.split_once(':').ok_or_else(|| format!("volume tier {tier:?} is not units:basis_points"))?;
            let units = units.trim().parse().map_err(|_| format!("volume tier {tier:?}: bad unit count"))?;
            let bp: u64 = bp.trim().parse().map_err(|_| format!("volume tier {tier:?}: bad basis points"))?;
            if u128::from(bp) > WHOLE {
                return Err(format!("volume tier {tier:?}: discount above 100 %"));
            }
            Ok((units, bp))
        })
        .collect()
}

/// A resolved promo code.
#[derive(Debug, Clone, PartialEq)]
pub struct Promo {
    /// The code as the customer gave it, upper-cased.
    pub code: String,
    /// Its discount in basis points.
    pub basis_points: u64,
}

/// The order's promo code attribute, upper-cased, if it has one.
pub fn promo_code(order: &Order) -> Option<String> {
    order
        .attributes
        .iter()
        .find(|attribute| attribute.key == "promo_code")
        .map(|attribute| attribute.value.trim().to_ascii_uppercase())
        .filter(|code| !code.is_empty())
}

/// Longest promo code accepted.
const MAX_PROMO_CODE: usize = 32;

/// A violation of the order's promo code.
pub fn promo_violation(code: &str, message: String) -> Violation {
    Violation { code: code.into(), field: "attributes/promo_code".into(), message }
}

/// A promo code is 1 to 32 letters, digits, `-` or `_` (upper-cased by
/// [`promo_code`]); anything else is refused before it is looked up.
pub fn check_promo_code(code: &str) -> Result<(), Vec<Violation>> {
    let well_formed = code.len() <= MAX_PROMO_CODE
        && code.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if well_formed {
        return Ok(());
    }
    let message = format!("a promo code is 1 to {MAX_PROMO_CODE} letters, digits, '-' or '_'");
    Err(vec![promo_violation("invalid-promo-code", message)])
}

/// The promo behind a stored value: basis points from 0 to 10000. Any other
/// value cannot be applied (rather than misprice, the order is refused).
pub fn parse_promo(code: &str, value: &str) -> Result<Promo, Violation> {
    match value.trim().parse::<u64>() {
        Ok(basis_points) if u128::from(basis_points) <= WHOLE => Ok(Promo { code: code.to_string(), basis_points }),
        _ => Err(promo_violation("unusable-promo-code", format!("promo code {code} cannot be applied"))),
    }
}

fn overflow(field: String) -> Vec<Violation> {
    vec![Violation { code: "amount-overflow".into(), field, message: "the amount is too large to price".into() }]
}

/// `amount * basis_points / 10000`, rounded half up. Cannot overflow: the
/// product of two u64 fits in a u128, and the result is at most `amount`
/// whenever `basis_points <= 10000`.
fn share(amount: u64, basis_points: u64) -> u64 {
    let value = (u128::from(amount) * u128::from(basis_points) + WHOLE / 2) / WHOLE;
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// Prices `order`.
pub fn price(order: &Order, settings: &Settings, promo: Option<&Promo>) -> Result<Quote, Vec<Violation>> {
    let mut lines = Vec::with_capacity(order.items.len());
    let mut subtotal: u64 = 0;
    let mut units: u64 = 0;
    for (index, item) in order.items.iter().enumerate() {
        let line_total =
            item.unit_price.checked_mul(u64::from(item.quantity)).ok_or_else(|| overflow(format!("items/{index}")))?;
        subtotal = subtotal.checked_add(line_total).ok_or_else(|| overflow("items".into()))?;
        units += u64::from(item.quantity);
        lines.push(PricedLine {
            product_id: item.product_id,
            quantity: item.quantity,
            unit_price: item.unit_price,
            line_total,
        });
    }

    let volume = settings.volume_tiers.iter().filter(|(min_units, _)| units >= *min_units).map(|(_, bp)| *bp).max();
    let mut notes = Vec::new();
    let discount_bp = match (volume, promo) {
        (volume, Some(promo)) if promo.basis_points >= volume.unwrap_or(0) => {
            notes.push(format!("promo {}: -{}", promo.code, percent(promo.basis_points)));
            promo.basis_points
        }
        (Some(volume), _) => {
            notes.push(format!("volume discount for {units} units: -{}", percent(volume)));
            volume
        }
        (None, _) => 0,
    };
    let discount = share(subtotal, discount_bp).min(subtotal);
    let taxable = subtotal - discount;
    let tax = share(taxable, settings.tax_rate_bp);
    let shipping = if taxable >= settings.free_shipping_threshold {
        if settings.shipping_flat > 0 {
            notes.push("free shipping".into());
        }
        0
    } else {
        settings.shipping_flat
    };
    let total =
        taxable.checked_add(tax).and_then(|sum| sum.checked_add(shipping)).ok_or_else(|| overflow("total".into()))?;
    Ok(Quote { lines, subtotal, discount, tax, shipping, total, currency: order.currency.clone(), notes })
}

fn percent(basis_points: u64) -> String {
    match basis_points % 100 {
        0 => format!("{}%", basis_points / 100),
        rest => format!("{}.{:02}%", basis_points / 100, rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::orderly::rules::types::{Attribute, LineItem};

    fn order(lines: &[(u64, u32)]) -> Order {
        Order {
            id: None,
            user_id: 7,
            currency: "EUR".into(),
            items: lines
                .iter()
                .enumerate()
                .map(|(i, &(unit_price, quantity))| LineItem {
                    product_id: i as u64 + 1,
                    sku: format!("SKU-{i}"),
                    name: "thing".into(),
                    unit_price,
                    quantity,
                })
                .collect(),
            attributes: vec![],
        }
    }

    #[test]
    fn small_order_pays_shipping_and_tax() {
        let settings = Settings { tax_rate_bp: 800, ..Settings::default() };
        let quote = price(&order(&[(1250, 2)]), &settings, None).unwrap();
        assert_eq!((quote.subtotal, quote.discount, quote.tax, quote.shipping), (2500, 0, 200, 499));
        assert_eq!(quote.total, 2500 + 200 + 499);
    }

    #[test]
    fn volume_tier_applies_by_total_units_and_frees_shipping() {
        let quote = price(&order(&[(1000, 6), (1000, 6)]), &Settings::default(), None).unwrap();
        assert_eq!(quote.subtotal, 12_000);
        assert_eq!(quote.discount, 600, "12 units reach the 5 % tier");
        assert_eq!(quote.shipping, 0);
        assert_eq!(quote.total, 11_400);
    }

    #[test]
    fn the_larger_of_promo_and_volume_wins() {
        let promo = Promo { code: "SAVE10".into(), basis_points: 1000 };
        let quote = price(&order(&[(1000, 12)]), &Settings::default(), Some(&promo)).unwrap();
        assert_eq!(quote.discount, 1200);
        assert_eq!(quote.notes[0], "promo SAVE10: -10%");
        let small = Promo { code: "SAVE1".into(), basis_points: 100 };
        let quote = price(&order(&[(1000, 12)]), &Settings::default(), Some(&small)).unwrap();
        assert_eq!(quote.discount, 600);
    }

    #[test]
    fn tax_rounds_half_up() {
        let settings = Settings { tax_rate_bp: 1950, volume_tiers: vec![], ..Settings::default() };
        // 10.01 * 19.5 % = 1.95195 -> 1.95; 0.10 * 19.5 % = 0.0195 -> 0.02
        assert_eq!(price(&order(&[(1001, 1)]), &settings, None).unwrap().tax, 195);
        assert_eq!(price(&order(&[(10, 1)]), &settings, None).unwrap().tax, 2);
    }

    #[test]
    fn overflow_is_a_violation_not_a_panic() {
        let error = price(&order(&[(u64::MAX / 2, 3)]), &Settings::default(), None).unwrap_err();
        assert_eq!(error[0].code, "amount-overflow");
        assert_eq!(error[0].field, "items/0");
        let error =
            price(&order(&[(u64::MAX / 2, 1), (u64::MAX / 2, 1), (10, 1)]), &Settings::default(), None).unwrap_err();
        assert_eq!(error[0].field, "items");
    }

    #[test]
    fn settings_and_promo_code_parsing() {
        let settings = Settings::from_lookup(|key| match key {
            "volume_tiers" => Some("5:250, 20:750".into()),
            "tax_rate_bp" => Some("2100".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(settings.volume_tiers, vec![(5, 250), (20, 750)]);
        assert_eq!(settings.tax_rate_bp, 2100);
        assert!(Settings::from_lookup(|key| (key == "tax_rate_bp").then(|| "20001".into())).is_err());
        assert!(Settings::from_lookup(|key| (key == "volume_tiers").then(|| "5-250".into())).is_err());
        let mut with_code = order(&[(1, 1)]);
        with_code.attributes.push(Attribute { key: "promo_code".into(), value: " save10 ".into() });
        assert_eq!(promo_code(&with_code).as_deref(), Some("SAVE10"));
    }

    #[test]
    fn promo_codes_and_values_are_checked_not_trusted() {
        assert!(check_promo_code("SAVE-10_X").is_ok());
        assert_eq!(check_promo_code(&"A".repeat(33)).unwrap_err()[0].code, "invalid-promo-code");
        assert_eq!(check_promo_code("SAVE 10").unwrap_err()[0].code, "invalid-promo-code");
        assert_eq!(check_promo_code("CAF\u{c9}").unwrap_err()[0].code, "invalid-promo-code");
        assert_eq!(parse_promo("X", " 1500 ").unwrap().basis_points, 1500);
        for unusable in ["ten percent", "10001", "-5", ""] {
            assert_eq!(parse_promo("X", unusable).unwrap_err().code, "unusable-promo-code", "{unusable:?}");
        }
    }
}
