//! The cost of one `sql` capability call (the validation component's count
//! of a customer's open orders) against the same query issued directly by
//! the service, in the same run, on PostgreSQL and on the embedded SQLite.
//!
//! The capability's call is what a component gets: the slot's own login and
//! pool (PostgreSQL) or connection under an authorizer (SQLite), a
//! read-only transaction with a statement timeout, row and byte caps, and
//! the session reset afterwards. `just bench` runs it; the summary prints
//! medians and ratios.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use host::runtime::Slot;
use host::runtime::bindings::sql::Value;
use host::runtime::capabilities::{ComponentLogins, SqlQuery};
use host::runtime::slot_config::SqlGrant;
use host::store::{ConnectOptions, Retry, Store};

use common::{BenchDatabase, measuring, median_ns};

const COUNT: &str = "SELECT count(*) FROM open_orders WHERE user_id = $1";

/// The schema, the components' logins, and 10,000 orders of 100 customers.
async fn prepared_store(url: &str) -> Store {
    let options = ConnectOptions {
        url: url.to_owned(),
        max_connections: 4,
        retry: Retry { tries: 1, delay: Duration::ZERO },
        component_logins: ComponentLogins::default(),
    };
    let store = Store::open(&options).await.expect("the store opens");
    store.set_up_component_logins().await.expect("the component logins are set up");
    store
}

const INSERT_ORDERS: &str = "INSERT INTO orders (user_id, status, currency, subtotal, discount, tax, shipping, total,
        validated_by, priced_by, created_at, updated_at)
    SELECT n % 100, CASE WHEN n % 3 = 0 THEN 'delivered' ELSE 'pending' END, 'EUR', 100, 0, 0, 0, 100, 'v', 'p',
        '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00'";

fn grant() -> SqlGrant {
    SqlGrant { relations: vec!["open_orders".into()], ..SqlGrant::default() }
}

/// The count, as the validation component's `sql` capability call.
fn count_query<'a>(grant: &'a SqlGrant, user: &'a [Value]) -> SqlQuery<'a> {
    let deadline = Instant::now() + Duration::from_secs(1);
    SqlQuery { slot: Slot::Validation, statement: COUNT, params: user, grant, deadline }
}

fn postgres(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let database = BenchDatabase::create(rt);
    let store = rt.block_on(prepared_store(&database.url));
    let sql = store.components_sql();
    let grant = grant();
    rt.block_on(async {
        sql.apply_grant(Slot::Validation, Some(&grant)).await.unwrap();
        let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
        sqlx::query(&format!("{INSERT_ORDERS} FROM generate_series(1, 10000) AS n")).execute(&pool).await.unwrap();
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        pool.close().await;
    });
    let direct = rt.block_on(sqlx::PgPool::connect(&database.url)).unwrap();
    let user = [Value::Integer(42)];
    let mut group = c.benchmark_group("sql_postgres");
    group.measurement_time(Duration::from_secs(if measuring() { 5 } else { 1 }));
    group.bench_function("direct", |b| {
        b.to_async(rt)
            .iter(|| async { sqlx::query_scalar::<_, i64>(COUNT).bind(42i64).fetch_one(&direct).await.unwrap() })
    });
    group.bench_function("capability", |b| {
        b.to_async(rt).iter(|| async { sql.query(count_query(&grant, &user)).await.unwrap() })
    });
    group.finish();
    rt.block_on(async {
        direct.close().await;
        store.close().await;
    });
    database.drop_now(rt);
}

fn sqlite(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("orderly.db").display());
    let store = rt.block_on(prepared_store(&url));
    let sql = store.components_sql();
    let grant = grant();
    let direct = rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let numbers = "WITH RECURSIVE numbers(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM numbers WHERE n < 10000)";
        sqlx::query(&format!("{numbers} {INSERT_ORDERS} FROM numbers")).execute(&pool).await.unwrap();
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
        pool
    });
    let user = [Value::Integer(42)];
    let mut group = c.benchmark_group("sql_sqlite");
    group.measurement_time(Duration::from_secs(if measuring() { 5 } else { 1 }));
    group.bench_function("direct", |b| {
        b.to_async(rt)
            .iter(|| async { sqlx::query_scalar::<_, i64>(COUNT).bind(42i64).fetch_one(&direct).await.unwrap() })
    });
    group.bench_function("capability", |b| {
        b.to_async(rt).iter(|| async { sql.query(count_query(&grant, &user)).await.unwrap() })
    });
    group.finish();
    rt.block_on(direct.close());
}

fn sql_capability(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    postgres(c, &rt);
    sqlite(c, &rt);
}

criterion_group!(benches, sql_capability);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    println!("\nmedian per count of a customer's open orders:");
    for backend in ["postgres", "sqlite"] {
        let (Some(direct), Some(capability)) =
            (median_ns(&format!("sql_{backend}/direct")), median_ns(&format!("sql_{backend}/capability")))
        else {
            continue;
        };
        println!(
            "  {backend:<9} direct {:>8.1} µs   sql capability {:>8.1} µs   ({:.1}x the direct query)",
            direct / 1000.0,
            capability / 1000.0,
            capability / direct
        );
    }
}
