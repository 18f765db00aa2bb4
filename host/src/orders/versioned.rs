//! Redis cache entries that cannot go back in time, shared by the order and
//! product caches: each value is `<version> <json>`, and a write replaces
//! only an older version (renewing the expiry), so a late writer holding an
//! old copy (a reader's fill, a worker's slow write) never undoes a newer one.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

/// Stores each `<ARGV[2i]> <ARGV[2i+1]>` under KEYS[i] unless the key holds
/// the same or a newer version; ARGV[1] is the expiry in seconds.
static PUT_IF_NEWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        for index, key in ipairs(KEYS) do
          local version = tonumber(ARGV[index * 2])
          local current = redis.call('GET', key)
          local cached = current and tonumber(string.match(current, '^(%d+) '))
          if not cached or cached < version then
            redis.call('SET', key, ARGV[index * 2] .. ' ' .. ARGV[index * 2 + 1], 'EX', ARGV[1])
          end
        end
        return 0
        ",
    )
});

/// Writes each `(key, version, json)` unless its key holds the same or a
/// newer version, in one atomic step.
pub(super) async fn put_if_newer(
    connection: &ConnectionManager,
    entries: &[(String, i64, String)],
    ttl: Duration,
) -> redis::RedisResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut invocation = PUT_IF_NEWER.prepare_invoke();
    invocation.arg(ttl.as_secs().max(1));
    for (key, version, json) in entries {
        invocation.key(key).arg(version).arg(json);
    }
    invocation.invoke_async::<i64>(&mut connection.clone()).await.map(|_| ())
}

/// The JSON of a `<version> <json>` value; `None` for anything else.
pub(super) fn json_of(value: &str) -> Option<&str> {
    let (version, json) = value.split_once(' ')?;
    (!version.is_empty() && version.bytes().all(|byte| byte.is_ascii_digit())).then_some(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_versioned_values_are_read_back() {
        assert_eq!(json_of("12 {\"id\":1}"), Some("{\"id\":1}"));
        assert_eq!(json_of("garbage"), None);
        assert_eq!(json_of(r#"1700000000000000 {"id":3}"#), Some(r#"{"id":3}"#));
        assert_eq!(json_of(r#"{"id":3, "name":"a b"}"#), None, "an entry from before versions is a miss");
        assert_eq!(json_of("12x {}"), None);
        assert_eq!(json_of(" {}"), None);
    }
}
