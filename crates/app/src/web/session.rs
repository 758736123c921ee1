//! Dashboard sessions: a token typed once into the login form becomes a random session id in
//! an HttpOnly, SameSite=Strict cookie, so the page never holds the token. Every request a
//! session makes that changes something must carry the session's CSRF token in a header.
//! Sessions live in memory: a restarted daemon asks everyone to log in again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};

use super::Caller;

pub const COOKIE: &str = "bulwark_session";
/// The header a session's POST carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

pub struct Sessions {
    /// Keyed by the BLAKE3 hash of the session id: the ids themselves are not kept.
    open: Mutex<HashMap<blake3::Hash, Session>>,
    lifetime: Duration,
    /// Cookies get `Secure` when the daemon serves TLS.
    secure: bool,
}

#[derive(Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether `presented` is this session's CSRF token (compared as hashes, in constant
    /// time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        blake3::hash(presented.as_bytes()) == blake3::hash(self.csrf.as_bytes())
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn new(lifetime: Duration, secure: bool) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            lifetime,
            secure,
        }
    }

    /// Opens a session for `caller`; returns the cookie that carries it.
    pub fn open(&self, caller: Caller) -> HeaderValue {
        let id = random_token();
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, s| s.expires > now);
        open.insert(
            blake3::hash(id.as_bytes()),
            Session {
                caller,
                csrf: random_token(),
                expires: now + self.lifetime,
            },
        );
        self.cookie(&id, self.lifetime.as_secs())
    }

    /// The live session the request's cookie names, if any.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let key = blake3::hash(id.as_bytes());
        match open.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                open.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the request's session; returns the cookie that clears it in the browser.
    pub fn close(&self, headers: &HeaderMap) -> HeaderValue {
        if let Some(id) = cookie(headers, COOKIE) {
            self.open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&blake3::hash(id.as_bytes()));
        }
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        );
        // Hex ids, digits and fixed text: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::settings::Role;

    fn caller() -> Caller {
        Caller {
            name: "ops".into(),
            role: Role::Admin,
        }
    }

    fn request_with(cookie: &HeaderValue) -> HeaderMap {
        let id = cookie
            .to_str()
            .ok()
            .and_then(|c| c.split(';').next())
            .unwrap_or_default()
            .to_string();
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("theme=dark; {id}")).expect("a header value");
        h.insert(header::COOKIE, value);
        h
    }

    #[test]
    fn a_session_is_found_until_it_expires_or_is_closed() {
        let sessions = Sessions::new(Duration::from_secs(60), false);
        let set = sessions.open(caller());
        let text = set.to_str().unwrap_or_default();
        assert!(
            text.contains("HttpOnly") && text.contains("SameSite=Strict"),
            "{text}"
        );
        assert!(!text.contains("Secure"));
        let headers = request_with(&set);
        let found = sessions.find(&headers).map(|s| s.caller.name);
        assert_eq!(found.as_deref(), Some("ops"));
        let cleared = sessions.close(&headers);
        assert!(cleared.to_str().unwrap_or_default().contains("Max-Age=0"));
        assert!(sessions.find(&headers).is_none());

        let short = Sessions::new(Duration::from_millis(1), true);
        let set = short.open(caller());
        assert!(set.to_str().unwrap_or_default().ends_with("; Secure"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.find(&request_with(&set)).is_none());
    }

    #[test]
    fn a_made_up_id_or_csrf_token_is_refused() {
        let sessions = Sessions::new(Duration::from_secs(60), false);
        let set = sessions.open(caller());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("bulwark_session=00ff"),
        );
        assert!(sessions.find(&headers).is_none());
        let session = sessions
            .find(&request_with(&set))
            .expect("the session just opened is found");
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&random_token()));
    }
}
