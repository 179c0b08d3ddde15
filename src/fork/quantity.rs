//! Kubernetes resource quantities ("250m", "1Gi", "0.5", "2", "1e3") scaled by a decimal factor
//! with exact rational arithmetic: 0.1 × 3 must be 300m, not 300.00000000000006m.
//!
//! The result keeps the input's suffix family (binary stays binary) with the largest unit that
//! still gives a whole number, and never rounds down to zero: what cannot be written exactly is
//! rounded up to the smallest unit (1 byte for binary, 1m for decimal), as the API server would.

/// A non-negative rational number; numerators and denominators stay well inside i128 for every
/// quantity Kubernetes accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    num: i128,
    den: i128,
}

impl Ratio {
    fn new(num: i128, den: i128) -> Self {
        let g = gcd(num.abs(), den.abs()).max(1);
        Ratio {
            num: num / g,
            den: den / g,
        }
    }

    fn mul(self, other: Ratio) -> Option<Ratio> {
        let a = gcd(self.num.abs(), other.den).max(1);
        let b = gcd(other.num.abs(), self.den).max(1);
        Some(Ratio::new(
            (self.num / a).checked_mul(other.num / b)?,
            (self.den / b).checked_mul(other.den / a)?,
        ))
    }

    fn div_by(self, unit: i128) -> Ratio {
        let g = gcd(self.num.abs(), unit).max(1);
        Ratio::new(self.num / g, self.den * (unit / g))
    }

    fn whole(self) -> Option<i128> {
        (self.num % self.den == 0).then_some(self.num / self.den)
    }

    fn ceil(self) -> i128 {
        (self.num + self.den - 1).div_euclid(self.den)
    }

    /// A decimal number as written: "0.25", "2", "1.5e-1".
    pub fn parse_decimal(text: &str) -> Option<Ratio> {
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: i128 = format!("{int}{frac}").parse().ok()?;
        let scale = exponent - frac.len() as i32;
        let ten = 10i128.checked_pow(scale.unsigned_abs())?;
        Some(if scale >= 0 {
            Ratio::new(digits.checked_mul(ten)?, 1)
        } else {
            Ratio::new(digits, ten)
        })
    }
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

const BINARY: &[(&str, i128)] = &[
    ("Ei", 1 << 60),
    ("Pi", 1 << 50),
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
];

/// Decimal suffixes from large to small, as powers of ten.
const DECIMAL: &[(&str, i32)] = &[
    ("E", 18),
    ("P", 15),
    ("T", 12),
    ("G", 9),
    ("M", 6),
    ("k", 3),
    ("", 0),
    ("m", -3),
    ("u", -6),
    ("n", -9),
];

enum Family {
    Binary(usize),
    Decimal(usize),
}

fn split_suffix(text: &str) -> (&str, Family) {
    for (i, (suffix, _)) in BINARY.iter().enumerate() {
        if let Some(number) = text.strip_suffix(suffix) {
            return (number, Family::Binary(i));
        }
    }
    // "1E" is exa; "1E3" or "1e3" is an exponent, handled by parse_decimal.
    for (i, (suffix, _)) in DECIMAL.iter().enumerate() {
        if suffix.is_empty() {
            continue;
        }
        if let Some(number) = text.strip_suffix(suffix)
            && !number.is_empty()
            && number.ends_with(|c: char| c.is_ascii_digit() || c == '.')
        {
            return (number, Family::Decimal(i));
        }
    }
    let plain = DECIMAL
        .iter()
        .position(|(s, _)| s.is_empty())
        .expect("plain unit");
    (text, Family::Decimal(plain))
}

fn pow10(exp: i32) -> Ratio {
    let ten = 10i128.pow(exp.unsigned_abs());
    if exp >= 0 {
        Ratio::new(ten, 1)
    } else {
        Ratio::new(1, ten)
    }
}

/// `quantity × factor`, written back in the quantity's own suffix family.
pub fn scale(quantity: &str, factor: Ratio) -> Result<String, String> {
    let invalid = || format!("`{quantity}` is not a valid quantity");
    let text = quantity.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.starts_with('-') {
        return Err(format!("`{quantity}` is negative"));
    }
    let (number, family) = split_suffix(text);
    let value = Ratio::parse_decimal(number).ok_or_else(invalid)?;
    let too_large = || format!("`{quantity}` scaled is too large");
    match family {
        Family::Binary(i) => {
            let bytes = value
                .mul(Ratio::new(BINARY[i].1, 1))
                .and_then(|v| v.mul(factor))
                .ok_or_else(too_large)?;
            for (suffix, unit) in &BINARY[i..] {
                if let Some(n) = bytes.div_by(*unit).whole() {
                    return Ok(format!("{n}{suffix}"));
                }
            }
            Ok(bytes.ceil().max(1).to_string())
        }
        Family::Decimal(i) => {
            let base = value
                .mul(pow10(DECIMAL[i].1))
                .and_then(|v| v.mul(factor))
                .ok_or_else(too_large)?;
            let smallest = DECIMAL
                .iter()
                .position(|(s, _)| *s == "m")
                .expect("milli")
                .max(i);
            for (suffix, exp) in &DECIMAL[i..=smallest] {
                if let Some(n) = base.mul(pow10(-exp)).and_then(Ratio::whole) {
                    return Ok(format!("{n}{suffix}"));
                }
            }
            let (suffix, exp) = DECIMAL[smallest];
            let n = base.mul(pow10(-exp)).ok_or_else(too_large)?.ceil().max(1);
            Ok(format!("{n}{suffix}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaled(q: &str, factor: &str) -> String {
        scale(q, Ratio::parse_decimal(factor).unwrap()).unwrap()
    }

    #[test]
    fn cpu_quantities() {
        assert_eq!(scaled("250m", "0.25"), "63m"); // 62.5m rounds up
        assert_eq!(scaled("100m", "0.5"), "50m");
        assert_eq!(scaled("0.5", "0.25"), "125m");
        assert_eq!(scaled("2", "0.25"), "500m");
        assert_eq!(scaled("1", "2"), "2");
        assert_eq!(scaled("100m", "3"), "300m");
        assert_eq!(scaled("1m", "0.1"), "1m"); // never zero
        assert_eq!(scaled("1e3", "0.5"), "500");
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(scaled("1Gi", "0.25"), "256Mi");
        assert_eq!(scaled("64Mi", "0.5"), "32Mi");
        assert_eq!(scaled("100Mi", "0.3"), "30Mi");
        assert_eq!(scaled("128Mi", "0.3"), "40265319"); // 38.4Mi: no whole Ki, bytes rounded up
        assert_eq!(scaled("3Ki", "0.5"), "1536");
        assert_eq!(scaled("1Mi", "0.3"), "314573");
        assert_eq!(scaled("1G", "0.25"), "250M");
        assert_eq!(scaled("512M", "1.5"), "768M");
        assert_eq!(scaled("1E", "0.5"), "500P");
    }

    #[test]
    fn rejects_garbage() {
        let f = Ratio::parse_decimal("0.5").unwrap();
        assert!(scale("abc", f).is_err());
        assert!(scale("-1", f).is_err());
        assert!(scale("1.2.3Gi", f).is_err());
    }
}
