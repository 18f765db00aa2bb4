//! Reading orders (placing one is in `create_order`, changing one in `transitions`).

use std::collections::BTreeMap;

use super::rows::{DecisionRow, HistoryRow, LINE_COLUMNS, LineRow, ORDER_COLUMNS, OrderRow};
use super::{Store, StoreError, with_pool};
use crate::domain::{ComponentRecord, OrderDetail, OrderLine, OrderStatus, OrderSummary};

/// Which orders `GET /orders` lists.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub user_id: Option<i64>,
    pub status: Option<OrderStatus>,
    /// Only orders with an id below this one (newest first).
    pub before: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// One order with its lines, history and component record.
    pub async fn order(&self, id: i64) -> Result<OrderDetail, StoreError> {
        let order_sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let lines_sql = format!("SELECT {LINE_COLUMNS} FROM order_items WHERE order_id = $1 ORDER BY line_no");
        let (row, lines, history, decisions) = with_pool!(self, |pool| async {
            let Some(row) = sqlx::query_as::<_, OrderRow>(&order_sql).bind(id).fetch_optional(pool).await? else {
                return Err(StoreError::NotFound);
            };
            let lines = sqlx::query_as::<_, LineRow>(&lines_sql).bind(id).fetch_all(pool).await?;
            let history = sqlx::query_as::<_, HistoryRow>(
                "SELECT from_status, to_status, reason, correlation_id, changed_at \
                 FROM order_status_history WHERE order_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let decisions = sqlx::query_as::<_, DecisionRow>(
                "SELECT slot, component, version, digest, duration_us, decided_at \
                 FROM order_decisions WHERE order_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok((row, lines, history, decisions))
        }
        .await)?;
        let history = history.into_iter().map(HistoryRow::into_entry).collect::<Result<_, _>>()?;
        row.into_detail(
            lines.into_iter().map(OrderLine::from).collect(),
            history,
            decisions.into_iter().map(ComponentRecord::from).collect(),
        )
    }

    /// How many orders are in `status`.
    pub async fn count_orders(&self, status: OrderStatus) -> Result<i64, StoreError> {
        let count = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = $1")
                .bind(status.as_str())
                .fetch_one(pool)
                .await
        })?;
        Ok(count)
    }

    /// A page of orders, newest first, with their lines.
    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<OrderSummary>, StoreError> {
        let orders_sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows = with_pool!(self, |pool| {
            sqlx::query_as::<_, OrderRow>(&orders_sql)
                .bind(filter.user_id)
                .bind(filter.status.map(OrderStatus::as_str))
                .bind(filter.before)
                .bind(filter.limit)
                .fetch_all(pool)
                .await
        })?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let mut lines = self.lines_of(&ids).await?;
        rows.into_iter()
            .map(|row| {
                let items = lines.remove(&row.id).unwrap_or_default();
                row.into_summary(items)
            })
            .collect()
    }

    pub(super) async fn lines_of(&self, order_ids: &[i64]) -> Result<BTreeMap<i64, Vec<OrderLine>>, StoreError> {
        let mut by_order: BTreeMap<i64, Vec<OrderLine>> = BTreeMap::new();
        if order_ids.is_empty() {
            return Ok(by_order);
        }
        let marks: Vec<String> = (1..=order_ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM order_items WHERE order_id IN ({}) ORDER BY order_id, line_no",
            marks.join(", ")
        );
        let rows = with_pool!(self, |pool| {
            let mut query = sqlx::query_as::<_, LineRow>(&sql);
            for id in order_ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await
        })?;
        for row in rows {
            by_order.entry(row.order_id).or_default().push(row.into());
        }
        Ok(by_order)
    }
}
