//! A real browser for the UI tests: Debian's Chromium, headless, driven through
//! chromedriver over the W3C WebDriver protocol.
//!
//! The client is these few calls on the blocking HTTP client the harness already
//! uses, rather than a WebDriver crate: the tests need a dozen endpoints, and the
//! crates (fantoccini, thirtyfour) are async and would bring their own HTTP and TLS
//! stacks into a synchronous harness.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::{free_port, wait_until};

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Chromium's flags: headless, and quiet on the network (without these it calls
/// home for updates, components and metrics).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--password-store=basic",
    "--window-size=1280,900",
];

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// One headless Chromium with its own profile, and its chromedriver.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser. Panics with what to install when Chromium
    /// or chromedriver is missing (`scripts/test.sh` installs them).
    pub fn start() -> Browser {
        let driver_bin = std::env::var_os("BCM_CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| which(&["chromedriver"]))
            .expect("chromedriver is missing: apt-get install chromium chromium-driver");
        let chromium = std::env::var_os("BCM_CHROMIUM")
            .map(PathBuf::from)
            .or_else(|| which(&["chromium", "chromium-browser", "google-chrome"]))
            .expect("chromium is missing: apt-get install chromium chromium-driver");
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_bin.display()));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        wait_until(Duration::from_secs(20), "chromedriver to answer", || {
            b.http
                .get(format!("{}/status", b.base))
                .send()
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    r.json::<Value>().map_err(|e| e.to_string()).and_then(|v| {
                        match v["value"]["ready"].as_bool() {
                            Some(true) => Ok(()),
                            _ => Err(format!("not ready: {v}")),
                        }
                    })
                })
        });
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", b._profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let created = b
            .raw("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("starting a browser session: {e}"));
        b.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        b
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req.send().map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let v: Value = resp.json().map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{method} {path}: {status}: {}",
                v["value"]["message"].as_str().unwrap_or(&v.to_string())
            ));
        }
        Ok(v["value"].clone())
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.raw(method, &format!("/session/{}{}", self.session, path), body)
    }

    /// Opens `url`. Chromium drops requests in flight when the host's network
    /// changes (ERR_NETWORK_CHANGED, e.g. when containers start on this machine):
    /// a load that ends on its error page is tried again, a few times.
    pub fn goto(&self, url: &str) {
        for attempt in 1..=5 {
            self.cmd("POST", "/url", Some(json!({"url": url})))
                .unwrap_or_else(|e| panic!("opening {url}: {e}"));
            if !self.on_error_page() || attempt == 5 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Is the tab showing Chromium's own error page (the load failed)?
    pub fn on_error_page(&self) -> bool {
        self.exec("return document.documentURI", json!([]))
            .ok()
            .and_then(|v| v.as_str().map(|s| s.starts_with("chrome-error:")))
            .unwrap_or(false)
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .expect("resizing the window");
    }

    /// The element `css` selects, if there is one now.
    pub fn find(&self, css: &str) -> Result<String, String> {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no element id in {v}"))
    }

    pub fn count(&self, css: &str) -> usize {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
    }

    pub fn exists(&self, css: &str) -> bool {
        self.count(css) > 0
    }

    /// The page's URL, heading and message, for failure messages.
    pub fn where_now(&self) -> String {
        let code = if self.on_error_page() {
            self.exec(
                "return (document.body.innerText.match(/ERR_[A-Z_]+/) || [''])[0]",
                json!([]),
            )
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
        } else {
            String::new()
        };
        format!(
            "at {}: heading {:?}, message {:?} {code}",
            self.url(),
            self.text("h1").unwrap_or_default(),
            self.text("#flash").unwrap_or_default()
        )
    }

    /// Waits for `css` to appear.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> String {
        wait_until(timeout, css, || {
            if self.on_error_page() {
                // A load lost to a network change: load the page again.
                self.goto(&self.url());
            }
            self.find(css).map_err(|_| self.where_now())
        })
    }

    /// Clicks `css`, finding it again when a live update replaced it meanwhile.
    pub fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..5 {
            let id = self.wait_for(css, Duration::from_secs(10));
            match self.cmd("POST", &format!("/element/{id}/click"), None) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => last = e,
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
        panic!("clicking {css}: {last}");
    }

    /// Clicks the submit button `css` and waits until `done` holds on the page the
    /// form led to. When the submission was lost to a network change (Chromium's
    /// error page), the form's page is opened again and `retry` is called to fill
    /// the form in again before clicking once more; so `done` must also hold when an
    /// earlier, lost-looking submission did reach the server.
    pub fn submit<T>(
        &self,
        css: &str,
        what: &str,
        retry: impl Fn(&Browser),
        done: impl Fn(&Browser) -> Result<T, String>,
    ) -> T {
        let form_page = self.url();
        for _ in 0..8 {
            let mut last: String;
            // The form's own page may already show what `done` looks for (the
            // flash of an earlier submission of the same form): only the page the
            // click leads to counts, so the form's page is marked before the click.
            self.exec("window.__bcmFormPage = true; return null;", json!([]))
                .unwrap_or_else(|e| panic!("marking the form's page: {e}"));
            self.click(css);
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                if self.on_error_page() {
                    break;
                }
                let left_form_page = self
                    .exec("return window.__bcmFormPage !== true;", json!([]))
                    .map_err(|e| format!("the page is loading ({e})"))
                    .and_then(|v| match v.as_bool() {
                        Some(true) => Ok(()),
                        _ => Err("still on the form's page".to_string()),
                    });
                match left_form_page.and_then(|()| done(self)) {
                    Ok(v) => return v,
                    Err(e) => last = format!("{e} ({})", self.where_now()),
                }
                if std::time::Instant::now() > deadline {
                    panic!("timed out waiting for {what}; last seen: {last}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "browser: {what}: the submission was lost: {}",
                self.where_now()
            );
            self.goto(&form_page);
            retry(self);
        }
        panic!("{what}: every submission was lost to network changes");
    }

    /// Fills the form on the page in with `fill`, then [`Browser::submit`]s it with
    /// the button `css` (filling it in again with `fill` when a submission was lost).
    pub fn fill_in_and_submit<T>(
        &self,
        fill: impl Fn(&Browser),
        css: &str,
        what: &str,
        done: impl Fn(&Browser) -> Result<T, String>,
    ) -> T {
        fill(self);
        self.submit(css, what, fill, done)
    }

    /// Clears the field and types `text` into it, key by key.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for(css, Duration::from_secs(10));
        self.cmd("POST", &format!("/element/{id}/clear"), None)
            .unwrap_or_else(|e| panic!("clearing {css}: {e}"));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    pub fn text(&self, css: &str) -> Result<String, String> {
        let id = self.find(css)?;
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .map(|v| v.as_str().unwrap_or_default().to_string())
    }

    pub fn attr(&self, css: &str, name: &str) -> Result<Option<String>, String> {
        let id = self.find(css)?;
        self.cmd("GET", &format!("/element/{id}/attribute/{name}"), None)
            .map(|v| v.as_str().map(str::to_string))
    }

    /// The value of the cookie `name` (HttpOnly ones included: WebDriver sees them).
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/cookie/{name}"), None)
            .ok()
            .and_then(|v| v["value"].as_str().map(str::to_string))
    }

    /// Runs a script in the page and returns its value.
    pub fn exec(&self, script: &str, args: Value) -> Result<Value, String> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs a script that calls its last argument (a callback) with the result.
    pub fn exec_async(&self, script: &str, args: Value) -> Result<Value, String> {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.cmd("GET", "/screenshot", None).expect("a screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot directory");
        }
        std::fs::write(path, png).expect("writing the screenshot");
    }

    /// Logs in through the login form of the node at `base`.
    pub fn log_in(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/login"));
        self.fill_in_and_submit(
            |b| {
                b.type_into("#username", user);
                b.type_into("#password", password);
            },
            "form[action='/login'] button[type=submit]",
            "the page after logging in",
            |b| {
                if b.exists("form.logout") {
                    Ok(())
                } else {
                    Err("not logged in".into())
                }
            },
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.raw("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the UI tests write their screenshots: `<target>/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    crate::binary::target_dir().join("ui-screenshots")
}
