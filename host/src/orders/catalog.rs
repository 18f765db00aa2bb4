//! The catalogue: products as orders see them, through the product cache,
//! which every change here keeps honest.

use std::collections::HashMap;

use super::{OrderError, Orders};
use crate::domain::Product;
use crate::domain::input::{NewProduct, UpdateProductRequest};

impl Orders {
    /// Adds a product.
    pub async fn create_product(&self, product: &NewProduct) -> Result<Product, OrderError> {
        Ok(self.store.create_product(product).await?)
    }

    /// One product, from the database (what a reader is shown is never stale).
    pub async fn product(&self, id: i64) -> Result<Product, OrderError> {
        self.store.product(id).await.map_err(OrderError::product_not_found(id))
    }

    /// A page of products by ascending id, after the id `after`.
    pub async fn list_products(&self, after: Option<i64>, limit: i64) -> Result<Vec<Product>, OrderError> {
        Ok(self.store.list_products(after, limit).await?)
    }

    /// Changes a product; the cache holds the changed product from then on
    /// (a fill racing the change cannot put the old one back).
    pub async fn update_product(&self, id: i64, changes: &UpdateProductRequest) -> Result<Product, OrderError> {
        let updated = self.store.update_product(id, changes).await.map_err(OrderError::product_not_found(id))?;
        self.products.changed(&updated).await;
        Ok(updated)
    }

    /// The products with these ids that exist, from the cache where possible.
    pub(super) async fn products_by_id(&self, ids: &[i64]) -> Result<HashMap<i64, Product>, OrderError> {
        let cached = self.products.get_many(ids).await;
        let mut found: HashMap<i64, Product> = cached.into_iter().flatten().map(|p| (p.id, p)).collect();
        let missing: Vec<i64> = ids.iter().copied().filter(|id| !found.contains_key(id)).collect();
        if !missing.is_empty() {
            let loaded = self.store.products_by_id(&missing).await?;
            self.products.put_many(&loaded).await;
            found.extend(loaded.into_iter().map(|p| (p.id, p)));
        }
        Ok(found)
    }
}
