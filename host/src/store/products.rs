//! The product catalogue.

use chrono::Utc;

use super::{Store, StoreError, is_unique_violation, with_pool};
use crate::domain::Product;
use crate::domain::input::{NewProduct, UpdateProductRequest};

const COLUMNS: &str = "id, sku, name, price, currency, stock, active, created_at, updated_at";

/// Demo products seeded into an empty embedded database.
const DEMO: [(&str, &str, i64, i64); 4] = [
    ("MUG-01", "Stoneware mug", 1250, 100),
    ("TEA-01", "Green tea, 100 g", 990, 250),
    ("POT-01", "Cast-iron teapot", 4500, 20),
    ("KTL-01", "Electric kettle", 3900, 15),
];

impl Store {
    /// Inserts a product; a taken SKU is a [`StoreError::Conflict`].
    pub async fn create_product(&self, product: &NewProduct) -> Result<Product, StoreError> {
        let now = Utc::now();
        let sql = format!(
            "INSERT INTO products (sku, name, price, currency, stock, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
        );
        let inserted = with_pool!(self, |pool| {
            sqlx::query_as::<_, Product>(&sql)
                .bind(&product.sku)
                .bind(&product.name)
                .bind(product.price)
                .bind(&product.currency)
                .bind(product.stock)
                .bind(product.active)
                .bind(now)
                .fetch_one(pool)
                .await
        });
        inserted.map_err(|error| if is_unique_violation(&error) { StoreError::Conflict("sku") } else { error.into() })
    }

    /// One product.
    pub async fn product(&self, id: i64) -> Result<Product, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM products WHERE id = $1");
        let found = with_pool!(self, |pool| sqlx::query_as::<_, Product>(&sql).bind(id).fetch_optional(pool).await)?;
        found.ok_or(StoreError::NotFound)
    }

    /// The products among `ids` that exist, in any order.
    pub async fn products_by_id(&self, ids: &[i64]) -> Result<Vec<Product>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT {COLUMNS} FROM products WHERE id IN ({})", placeholders.join(", "));
        let found = with_pool!(self, |pool| {
            let mut query = sqlx::query_as::<_, Product>(&sql);
            for id in ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await
        })?;
        Ok(found)
    }

    /// A page of products by ascending id, after `after`.
    pub async fn list_products(&self, after: Option<i64>, limit: i64) -> Result<Vec<Product>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2");
        let page = with_pool!(self, |pool| {
            sqlx::query_as::<_, Product>(&sql).bind(after.unwrap_or(0)).bind(limit).fetch_all(pool).await
        })?;
        Ok(page)
    }

    /// Applies the given changes; absent fields keep their value.
    pub async fn update_product(&self, id: i64, changes: &UpdateProductRequest) -> Result<Product, StoreError> {
        let sql = format!(
            "UPDATE products SET name = COALESCE($1, name), price = COALESCE($2, price),
                 stock = COALESCE($3, stock), active = COALESCE($4, active), updated_at = $5
             WHERE id = $6 RETURNING {COLUMNS}"
        );
        let updated = with_pool!(self, |pool| {
            sqlx::query_as::<_, Product>(&sql)
                .bind(changes.name.as_deref())
                .bind(changes.price.map(i64::from))
                .bind(changes.stock.map(i64::from))
                .bind(changes.active)
                .bind(Utc::now())
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        updated.ok_or(StoreError::NotFound)
    }

    /// Seeds a few demo products when the catalogue is empty; returns how many.
    pub async fn seed_demo_products(&self, currency: &str) -> Result<usize, StoreError> {
        let count: i64 =
            with_pool!(self, |pool| sqlx::query_scalar("SELECT count(*) FROM products").fetch_one(pool).await)?;
        if count > 0 {
            return Ok(0);
        }
        for (sku, name, price, stock) in DEMO {
            let product = NewProduct {
                sku: sku.into(),
                name: name.into(),
                price,
                currency: currency.into(),
                stock,
                active: true,
            };
            match self.create_product(&product).await {
                // Another instance seeded at the same moment.
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(DEMO.len())
    }
}
