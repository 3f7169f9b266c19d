//! The hand-written assortment of DIY products the sample chain sells
//! (`assortment.tsv`): categories, product types and products.
//!
//! One product per line: category, product type, SKU, name, cost, base price
//! and a description that says what the product is for. Semantic search is
//! only as good as those descriptions.

use std::collections::HashSet;

use anyhow::{Result, bail, ensure};

const ASSORTMENT_TSV: &str = include_str!("assortment.tsv");
const HEADER: &str = "category\ttype\tsku\tproduct_name\tcost\tbase_price\tdescription";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub id: i32,
    pub name: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductType {
    pub id: i32,
    pub category_id: i32,
    pub name: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: i32,
    pub sku: &'static str,
    pub name: &'static str,
    pub category_id: i32,
    pub type_id: i32,
    pub cost: Cents,
    pub base_price: Cents,
    pub description: &'static str,
}

impl Product {
    /// (price - cost) / price in hundredths of a percent, rounded half up.
    pub fn gross_margin_basis_points(&self) -> i64 {
        let price = self.base_price.0;
        if price == 0 {
            return 0;
        }
        ((price - self.cost.0) * 10_000 * 2 + price) / (2 * price)
    }
}

/// An exact amount of money in cents; formatted with two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cents(pub i64);

impl Cents {
    /// Parses `12.34` (exactly two decimals, no sign).
    fn parse(text: &str) -> Option<Cents> {
        let (whole, fraction) = text.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || fraction.len() != 2 || !digits(fraction) {
            return None;
        }
        Some(Cents(
            whole.parse::<i64>().ok()? * 100 + fraction.parse::<i64>().ok()?,
        ))
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[derive(Debug)]
pub struct Assortment {
    pub categories: Vec<Category>,
    pub product_types: Vec<ProductType>,
    pub products: Vec<Product>,
}

impl Assortment {
    /// The assortment compiled into the binary.
    pub fn bundled() -> Result<Assortment> {
        Assortment::parse(ASSORTMENT_TSV)
    }

    /// Parses the TSV; ids are assigned in order of first appearance.
    fn parse(tsv: &'static str) -> Result<Assortment> {
        let mut lines = tsv.lines().enumerate();
        match lines.next() {
            Some((_, header)) if header == HEADER => {}
            _ => bail!("assortment.tsv line 1: expected the header `{HEADER}`"),
        }
        let mut assortment = Assortment {
            categories: Vec::new(),
            product_types: Vec::new(),
            products: Vec::new(),
        };
        let mut skus = HashSet::new();
        for (index, line) in lines {
            let line_no = index + 1;
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&'static str> = line.split('\t').collect();
            let [category, type_name, sku, name, cost, price, description] = fields[..] else {
                bail!(
                    "assortment.tsv line {line_no}: expected 7 tab-separated fields, found {}",
                    fields.len()
                );
            };
            let cost = Cents::parse(cost).ok_or_else(|| {
                anyhow::anyhow!("assortment.tsv line {line_no}: cost `{cost}` is not like 12.34")
            })?;
            let base_price = Cents::parse(price).ok_or_else(|| {
                anyhow::anyhow!(
                    "assortment.tsv line {line_no}: base_price `{price}` is not like 12.34"
                )
            })?;
            ensure!(
                base_price > cost,
                "assortment.tsv line {line_no}: base_price {base_price} is not above cost {cost}"
            );
            ensure!(
                skus.insert(sku),
                "assortment.tsv line {line_no}: duplicate SKU {sku}"
            );
            ensure!(
                !description.trim().is_empty(),
                "assortment.tsv line {line_no}: empty description"
            );
            let category_id = assortment.category_id(category);
            let type_id = assortment.type_id(category_id, type_name);
            assortment.products.push(Product {
                id: assortment.products.len() as i32 + 1,
                sku,
                name,
                category_id,
                type_id,
                cost,
                base_price,
                description,
            });
        }
        Ok(assortment)
    }

    fn category_id(&mut self, name: &'static str) -> i32 {
        if let Some(found) = self.categories.iter().find(|c| c.name == name) {
            return found.id;
        }
        let id = self.categories.len() as i32 + 1;
        self.categories.push(Category { id, name });
        id
    }

    fn type_id(&mut self, category_id: i32, name: &'static str) -> i32 {
        if let Some(found) = self
            .product_types
            .iter()
            .find(|t| t.category_id == category_id && t.name == name)
        {
            return found.id;
        }
        let id = self.product_types.len() as i32 + 1;
        self.product_types.push(ProductType {
            id,
            category_id,
            name,
        });
        id
    }

    pub fn category_name(&self, category_id: i32) -> &'static str {
        self.categories[(category_id - 1) as usize].name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_assortment_is_large_and_well_formed() {
        let assortment = Assortment::bundled().expect("assortment.tsv parses");
        assert!(
            assortment.categories.len() >= 8,
            "{} categories",
            assortment.categories.len()
        );
        assert!(
            assortment.products.len() >= 300,
            "{} products",
            assortment.products.len()
        );
        for category in &assortment.categories {
            let types = assortment
                .product_types
                .iter()
                .filter(|t| t.category_id == category.id)
                .count();
            assert!(
                types >= 3,
                "category {} has {types} product types",
                category.name
            );
        }
        let names: HashSet<_> = assortment.products.iter().map(|p| p.name).collect();
        assert_eq!(
            names.len(),
            assortment.products.len(),
            "product names are unique"
        );
        for product in &assortment.products {
            let words = product.description.split_whitespace().count();
            assert!((8..=60).contains(&words), "{}: {words} words", product.sku);
            let margin = product.gross_margin_basis_points();
            assert!(
                (1_000..=7_000).contains(&margin),
                "{}: margin {margin}bp",
                product.sku
            );
        }
    }

    #[test]
    fn cents_parse_exactly_two_decimals() {
        assert_eq!(Cents::parse("12.34"), Some(Cents(1234)));
        assert_eq!(Cents::parse("0.05"), Some(Cents(5)));
        assert_eq!(Cents(1205).to_string(), "12.05");
        for bad in ["12", "12.3", "12.345", "-1.00", "1,00", ".50", "a.bc", ""] {
            assert_eq!(Cents::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn gross_margin_rounds_half_up() {
        let product = |cost, price| Product {
            id: 1,
            sku: "X",
            name: "X",
            category_id: 1,
            type_id: 1,
            cost: Cents(cost),
            base_price: Cents(price),
            description: "x",
        };
        // (3.00 - 2.00) / 3.00 = 33.333..% -> 33.33
        assert_eq!(product(200, 300).gross_margin_basis_points(), 3333);
        // (8.00 - 1.00) / 8.00 = 87.5% exactly
        assert_eq!(product(100, 800).gross_margin_basis_points(), 8750);
        // (3.00 - 1.00) / 3.00 = 66.666..% -> 66.67
        assert_eq!(product(100, 300).gross_margin_basis_points(), 6667);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let err = Assortment::parse("nope").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        let bad = "category\ttype\tsku\tproduct_name\tcost\tbase_price\tdescription\n\
                   A\tB\tSKU-1\tName\t1.00\t0.50\tdesc";
        let err = Assortment::parse(bad).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("not above cost"),
            "{err}"
        );
    }
}
