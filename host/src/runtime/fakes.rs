//! Deterministic capability backends: canned SQL rows, canned HTTP responses
//! and captured log lines. Golden fixtures run against these (so a hot-swap
//! gate never touches production data), and the component test kit exposes
//! them to component authors.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::bindings::errors::Error;
use super::bindings::http::{Header, Request, Response};
use super::bindings::logging::{Field, Level};
use super::bindings::sql::{Rows, Value};
use super::call::CallInfo;
use super::capabilities::{Capabilities, HttpBackend, LogSink, MemoryKv, SqlBackend, SqlQuery};
use super::slot_config::HttpGrant;

/// Rows answered to any statement containing `statement_contains`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CannedQuery {
    /// A fragment of the statement text to match, for example `from promotions`.
    pub statement_contains: String,
    /// Column names of the answer.
    #[serde(default)]
    pub columns: Vec<String>,
    /// The rows of the answer.
    #[serde(default)]
    pub rows: Vec<Vec<Value>>,
}

/// A statement the component ran, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenQuery {
    /// The statement text.
    pub statement: String,
    /// The bound parameters.
    pub params: Vec<Value>,
}

/// SQL answered from canned rows; an unmatched statement is `invalid`.
#[derive(Default)]
pub struct CannedSql {
    answers: Mutex<Vec<CannedQuery>>,
    seen: Mutex<Vec<SeenQuery>>,
}

impl CannedSql {
    /// Adds a canned answer; the first match wins.
    pub fn answer(&self, canned: CannedQuery) {
        self.answers.lock().unwrap().push(canned);
    }

    /// Every statement run so far.
    pub fn seen(&self) -> Vec<SeenQuery> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl SqlBackend for CannedSql {
    async fn query(&self, query: SqlQuery<'_>) -> Result<Rows, Error> {
        let SqlQuery { statement, params, grant, .. } = query;
        self.seen.lock().unwrap().push(SeenQuery { statement: statement.to_string(), params: params.to_vec() });
        let answers = self.answers.lock().unwrap();
        let canned = answers
            .iter()
            .find(|canned| statement.to_lowercase().contains(&canned.statement_contains.to_lowercase()))
            .ok_or_else(|| Error::Invalid(format!("no canned rows for statement {statement:?}")))?;
        if canned.rows.len() > grant.max_rows {
            return Err(Error::LimitExceeded(format!("the query returned more than {} rows", grant.max_rows)));
        }
        Ok(Rows { columns: canned.columns.clone(), values: canned.rows.clone() })
    }
}

/// A response answered to every request for `url`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CannedResponse {
    /// The exact URL to match.
    pub url: String,
    /// Status code.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: Vec<Header>,
    /// Body, as text.
    #[serde(default)]
    pub body: String,
}

fn ok_status() -> u16 {
    200
}

/// HTTP answered from canned responses; an unmatched URL is `unavailable`,
/// as an unreachable host would be.
#[derive(Default)]
pub struct CannedHttp {
    responses: Mutex<Vec<CannedResponse>>,
    seen: Mutex<Vec<Request>>,
}

impl CannedHttp {
    /// Adds a canned response.
    pub fn respond(&self, canned: CannedResponse) {
        self.responses.lock().unwrap().push(canned);
    }

    /// Every request sent so far (allowlisted ones only: denied requests never
    /// reach a backend).
    pub fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait]
impl HttpBackend for CannedHttp {
    async fn send(&self, url: url::Url, request: Request, grant: &HttpGrant) -> Result<Response, Error> {
        self.seen.lock().unwrap().push(request);
        let responses = self.responses.lock().unwrap();
        let canned = responses
            .iter()
            .find(|canned| {
                canned.url == url.as_str() || canned.url.trim_end_matches('/') == url.as_str().trim_end_matches('/')
            })
            .ok_or_else(|| Error::Unavailable(format!("no canned response for {url}")))?;
        if canned.body.len() > grant.max_response_bytes {
            return Err(Error::LimitExceeded(format!(
                "the response body is larger than {} bytes",
                grant.max_response_bytes
            )));
        }
        Ok(Response { status: canned.status, headers: canned.headers.clone(), body: canned.body.clone().into_bytes() })
    }
}

/// One captured log line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    /// The slot that wrote it.
    pub slot: String,
    /// Its correlation id.
    pub correlation_id: String,
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its fields.
    pub fields: Vec<Field>,
}

/// Keeps log lines in memory for assertions.
#[derive(Default)]
pub struct CapturedLogs {
    lines: Mutex<Vec<LogLine>>,
}

impl CapturedLogs {
    /// Every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().unwrap().clone()
    }

    /// Forgets every line so far.
    pub fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

impl LogSink for CapturedLogs {
    fn log(&self, call: &CallInfo, level: Level, message: &str, fields: &[Field]) {
        self.lines.lock().unwrap().push(LogLine {
            slot: call.slot.to_string(),
            correlation_id: call.correlation_id.to_string(),
            level,
            message: message.to_string(),
            fields: fields.to_vec(),
        });
    }
}

/// A full set of fake backends, each reachable for seeding and inspection.
#[derive(Clone, Default)]
pub struct Fakes {
    /// In-memory key-value store (keys as stored: `kv:<prefix>:<key>`).
    pub kv: Arc<MemoryKv>,
    /// Canned SQL.
    pub sql: Arc<CannedSql>,
    /// Canned HTTP.
    pub http: Arc<CannedHttp>,
    /// Captured logs.
    pub logs: Arc<CapturedLogs>,
}

impl Fakes {
    /// The backends as [`Capabilities`].
    pub fn capabilities(&self) -> Capabilities {
        Capabilities { kv: self.kv.clone(), sql: self.sql.clone(), http: self.http.clone(), logs: self.logs.clone() }
    }
}
