-- What components may be granted to read (`grants.sql.relations`): views
-- that expose only what a rule needs, never the tables behind them.

-- Orders not yet shipped or cancelled, per customer: the validation
-- component's limit on open orders.
CREATE VIEW open_orders AS
    SELECT id AS order_id, user_id, status
    FROM orders
    WHERE status IN ('pending', 'processing', 'on_hold');
