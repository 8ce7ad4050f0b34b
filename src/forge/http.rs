//! The REST core both forges share: one `reqwest` client per forge, the token sent only to the
//! configured origin (no redirects, no foreign `Link` pages), answers read within a byte budget,
//! `Link: rel="next"` paging with a page cap, and rate limits waited out within a budget.

use super::{Error, Result, Token, clean_remote_text};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Largest answer read from a forge.
const MAX_BODY_BYTES: usize = 8 << 20;
/// Most pages one listing follows (100 per page on GitHub, 50 on Gitea).
const MAX_PAGES: usize = 200;

/// How long calls may take and how rate limits are waited out. A 403/429 answer carrying
/// `Retry-After` (GitHub's secondary limits) or `x-ratelimit-remaining: 0` is retried after the
/// time the forge asks for, when that fits the budget; otherwise the call fails with
/// [`Error::RateLimited`] so the caller retries later. Never a crash, never a busy loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Longest single wait the client accepts.
    pub max_wait: Duration,
    /// Longest total waiting per call.
    pub total_wait: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            max_wait: Duration::from_secs(60),
            total_wait: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A raw answer.
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

pub(crate) struct Rest {
    client: reqwest::Client,
    /// API base, ending in `/`.
    base: Url,
    auth: HeaderValue,
    token: Token,
    retry: RetryPolicy,
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

impl Rest {
    /// `auth_scheme` is `Bearer` (GitHub) or `token` (Gitea); `headers` are sent on every call.
    pub fn new(
        api_base: &str,
        auth_scheme: &str,
        token: Token,
        headers: &[(&'static str, &'static str)],
        retry: RetryPolicy,
    ) -> Result<Rest> {
        let mut base = Url::parse(api_base.trim())
            .map_err(|e| Error::Config(format!("API URL {api_base:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(Error::Config(format!(
                "API URL {api_base:?}: must be http(s)://host[/path]"
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Error::Config(
                "API URL must not carry credentials; use the token Secret".into(),
            ));
        }
        base.set_query(None);
        base.set_fragment(None);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let mut auth = HeaderValue::from_str(&format!("{auth_scheme} {}", token.expose()))
            .map_err(|_| Error::Config("the API token holds characters a header cannot".into()))?;
        auth.set_sensitive(true);
        let mut default_headers = HeaderMap::new();
        for (k, v) in headers {
            default_headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("fledge/", env!("CARGO_PKG_VERSION")))
            .default_headers(default_headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(retry.request_timeout)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Rest {
            client,
            base,
            auth,
            token,
            retry,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The API URL of `segments` (each percent-encoded as one path segment) with `query`.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.base.origin() && url.path().starts_with(self.base.path())
    }

    fn clean(&self, text: &str) -> String {
        clean_remote_text(text, 300, Some(self.token.expose()))
    }

    /// Sends one request, waiting out rate limits within the retry policy. Any other answer is
    /// returned as is (use [`Rest::ok`] to turn error statuses into errors).
    pub async fn call(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Response> {
        let name = method_name(&method);
        let path = self.clean(url.path());
        let mut waited = Duration::ZERO;
        let mut attempt = 1;
        loop {
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .header(reqwest::header::AUTHORIZATION, self.auth.clone());
            if let Some(b) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| Error::Transport {
                method: name,
                path: path.clone(),
                message: self.clean(&e.without_url().to_string()),
            })?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = read_limited(resp).await.map_err(|message| Error::Decode {
                method: name,
                path: path.clone(),
                message,
            })?;
            let Some(wait) = rate_limit_wait(status, &headers, &body) else {
                return Ok(Response {
                    status,
                    headers,
                    body,
                });
            };
            if attempt >= self.retry.max_attempts
                || wait > self.retry.max_wait
                || waited + wait > self.retry.total_wait
            {
                return Err(Error::RateLimited {
                    method: name,
                    path,
                    retry_after: wait,
                });
            }
            tracing::warn!(
                method = name,
                path = %path,
                wait_s = wait.as_secs_f64(),
                attempt,
                "forge rate limit; waiting before retrying"
            );
            tokio::time::sleep(wait).await;
            waited += wait;
            attempt += 1;
        }
    }

    /// `resp` when its status is 2xx, else [`Error::Api`] with the forge's message.
    pub fn ok(&self, method: &Method, url: &Url, resp: Response) -> Result<Response> {
        if resp.status.is_success() {
            return Ok(resp);
        }
        Err(Error::Api {
            method: method_name(method),
            path: self.clean(url.path()),
            status: resp.status.as_u16(),
            message: self.clean(&api_message(&resp.body)),
        })
    }

    pub fn decode<T: DeserializeOwned>(
        &self,
        method: &Method,
        url: &Url,
        body: &[u8],
    ) -> Result<T> {
        serde_json::from_slice(body).map_err(|e| Error::Decode {
            method: method_name(method),
            path: self.clean(url.path()),
            message: self.clean(&e.to_string()),
        })
    }

    /// Sends a request and decodes a 2xx JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let resp = self.call(method.clone(), url, body).await?;
        let resp = self.ok(&method, url, resp)?;
        self.decode(&method, url, &resp.body)
    }

    /// GETs `url` and every page its `Link: rel="next"` headers lead to (same origin only).
    pub async fn get_all<T: DeserializeOwned>(&self, url: &Url) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next = Some(url.clone());
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::Decode {
                    method: "GET",
                    path: self.clean(url.path()),
                    message: format!("more than {MAX_PAGES} pages"),
                });
            }
            let resp = self.call(Method::GET, &url, None).await?;
            let resp = self.ok(&Method::GET, &url, resp)?;
            let page: Vec<T> = self.decode(&Method::GET, &url, &resp.body)?;
            let empty = page.is_empty();
            items.extend(page);
            if let Some(link) = next_link(&resp.headers) {
                let link = Url::parse(&link).map_err(|e| Error::Decode {
                    method: "GET",
                    path: self.clean(url.path()),
                    message: format!("bad Link header: {}", self.clean(&e.to_string())),
                })?;
                if !self.same_origin(&link) {
                    return Err(Error::Decode {
                        method: "GET",
                        path: self.clean(url.path()),
                        message: "Link header points to another origin; not following it".into(),
                    });
                }
                if !empty && link != url {
                    next = Some(link);
                }
            }
        }
        Ok(items)
    }
}

async fn read_limited(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("answer larger than {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `message` of a JSON error answer, with GitHub's `errors[].message` details, or the start
/// of the raw body.
pub(crate) fn api_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Detail {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ApiError {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        errors: Vec<Detail>,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => {
            let mut msg = e.message.unwrap_or_default();
            for d in e.errors {
                if let Some(m) = d.message.or(d.code) {
                    msg.push_str(if msg.is_empty() { "" } else { ": " });
                    msg.push_str(&m);
                }
            }
            msg
        }
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// How long to wait before retrying, when the answer is a rate limit.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let reset = header("x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok());
        return Some(Duration::from_secs(
            reset.map_or(60, |r| r.saturating_sub(now).max(1)),
        ));
    }
    // A secondary limit without headers: GitHub documents waiting at least a minute.
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    (status == StatusCode::TOO_MANY_REQUESTS || text.contains("rate limit"))
        .then(|| Duration::from_secs(60))
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3>; rel=\"next\", <https://api.github.com/x?page=9>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/x?page=3")
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn rate_limits_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &h, b""),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                b"{\"message\":\"Resource not accessible by integration\"}"
            ),
            None
        );
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                b"{\"message\":\"You have exceeded a secondary rate limit\"}"
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(rate_limit_wait(StatusCode::OK, &h, b""), None);
    }

    #[test]
    fn api_messages_include_details() {
        let body = br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for o:b."}]}"#;
        assert_eq!(
            api_message(body),
            "Validation Failed: A pull request already exists for o:b."
        );
    }

    #[test]
    fn urls_encode_each_segment() {
        let rest = Rest::new(
            "https://ghe.example/api/v3",
            "Bearer",
            Token::new("t0ken-value"),
            &[],
            RetryPolicy::default(),
        )
        .unwrap();
        let url = rest.url(
            &["repos", "o", "r", "pulls"],
            &[("head", "o:fledge/rollback/a b")],
        );
        assert_eq!(
            url.as_str(),
            "https://ghe.example/api/v3/repos/o/r/pulls?head=o%3Afledge%2Frollback%2Fa+b"
        );
        let url = rest.url(&["repos", "o", "r", "statuses", "a/b"], &[]);
        assert_eq!(url.path(), "/api/v3/repos/o/r/statuses/a%2Fb");
        assert!(
            Rest::new(
                "https://u:p@h/",
                "Bearer",
                Token::new("x"),
                &[],
                RetryPolicy::default()
            )
            .is_err()
        );
    }
}
