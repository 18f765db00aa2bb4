//! No oversell: stock is taken in the order's transaction, only where enough remains.

use serde_json::Value;

use crate::on_both_backends;

on_both_backends!(twenty_orders_for_the_last_five_units, |app| {
    let id = app.product("LAST-5", 100, 5).await;
    let line = [(id, 1)];
    let attempts = (0..20).map(|_| app.order(&line));
    let responses = futures::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [[201; 5].as_slice(), [409; 15].as_slice()].concat(), "exactly five succeed");
    assert_eq!(app.stock(id).await, 0);
    let orders: Value = app.get("/api/v1/orders?limit=100").await.json().await.unwrap();
    assert_eq!(orders["items"].as_array().unwrap().len(), 5, "no order was stored for a refused request");
});
