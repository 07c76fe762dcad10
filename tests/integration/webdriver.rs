//! A small WebDriver client (the W3C protocol, over HTTP on loopback) for
//! driving Debian's headless Chromium through its ChromeDriver: what the
//! console's browser tests need, and nothing more.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Times an action finds its element again when the page replaced it
/// between the finding and the action.
const STALE_TRIES: usize = 5;

/// How long a wait for the page lasts before the test fails.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// Chromium and its driver, when this machine has them.
pub struct Browsers {
    chromium: PathBuf,
    driver: PathBuf,
}

impl Browsers {
    /// The installed ones (`/usr/bin/chromium`, `chromedriver` on `PATH`);
    /// `None`, said as `skipped: …`, when one is missing, or a panic
    /// when `FLAGSD_REQUIRE_BROWSER=1` (CI) says they must be there.
    pub fn find() -> Option<Self> {
        let chromium = crate::helpers::tool("chromium");
        let driver = crate::helpers::tool("chromedriver");
        match (chromium, driver) {
            (Some(chromium), Some(driver)) => Some(Self { chromium, driver }),
            _ => {
                let why = "skipped: browser test: chromium and chromium-driver are not installed (.ci/install-tools)";
                assert!(std::env::var("FLAGSD_REQUIRE_BROWSER").as_deref() != Ok("1"), "{why}");
                println!("{why}");
                None
            }
        }
    }
}

/// A running ChromeDriver with one headless Chromium session; both end
/// when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and a headless Chromium
    /// with a profile of its own, `width` × `height` pixels.
    pub fn start(browsers: &Browsers, width: u32, height: u32) -> Self {
        let port = {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let driver = Command::new(&browsers.driver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".to_owned()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let ready = crate::helpers::wait_until(PAGE_WAIT, || {
            client.get(format!("{base}/status")).send().is_ok_and(|r| r.status().is_success())
        });
        assert!(ready, "chromedriver did not start on port {port}");
        let profile = tempfile::tempdir().expect("a profile directory");
        // Headless, and with nothing that reaches beyond loopback.
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": browsers.chromium, "args": args},
        }}});
        let request = client.post(format!("{base}/session")).header("Content-Type", "application/json");
        let answer = read(request.body(capabilities.to_string())).expect("a session");
        let session =
            answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_owned();
        Self { driver, base, session, client, _profile: profile }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|(error, message)| panic!("{path}: {error}: {message}"))
    }

    /// The answer's value, or its WebDriver error and message.
    fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, (Value, Value)> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body.to_string());
        }
        let answer = read(request).unwrap_or_else(|e| panic!("{path}: {e}"));
        match answer["value"].get("error") {
            Some(error) => Err((error.clone(), answer["value"]["message"].clone())),
            None => Ok(answer["value"].clone()),
        }
    }

    /// Calls `method` on `/element/{id}{path}` for the element `css`
    /// selects, finding it again when the page replaced it in between (the
    /// console redraws its tables as it samples).
    fn on_element(&self, css: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        for _ in 0..STALE_TRIES {
            let element = self.find(css);
            match self.try_call(method.clone(), &format!("/element/{element}{path}"), body.clone()) {
                Err((error, _)) if error == "stale element reference" => continue,
                Err((error, message)) => panic!("{css}{path}: {error}: {message}"),
                Ok(value) => return value,
            }
        }
        panic!("{css}{path}: the element was replaced {STALE_TRIES} times in a row")
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects (the first one).
    pub fn find(&self, css: &str) -> String {
        let found = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "/click", Some(json!({})));
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, reqwest::Method::POST, "/value", Some(json!({ "text": text })));
    }

    /// The text the element `css` selects shows.
    pub fn text(&self, css: &str) -> String {
        self.on_element(css, reqwest::Method::GET, "/text", None).as_str().unwrap_or_default().to_owned()
    }

    /// What `script` (a function body, `return …`) returns in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": [] })))
    }

    /// Waits until `script` returns true in the page; the test fails, with
    /// `what`, when it does not within [`PAGE_WAIT`].
    pub fn wait_for(&self, what: &str, script: &str) {
        let start = Instant::now();
        while start.elapsed() < PAGE_WAIT {
            if self.eval(script) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let body = self.eval("return document.body.innerText;");
        panic!("the page never showed {what}; it shows:\n{}", body.as_str().unwrap_or_default());
    }

    /// Makes the page see `prefers-color-scheme: scheme` (`light`, `dark`),
    /// through the DevTools protocol that ChromeDriver passes on.
    pub fn prefer_color_scheme(&self, scheme: &str) {
        let features = json!([{ "name": "prefers-color-scheme", "value": scheme }]);
        let command = json!({ "cmd": "Emulation.setEmulatedMedia", "params": { "features": features } });
        self.call(reqwest::Method::POST, "/goog/cdp/execute", Some(command));
    }

    /// The browser's cookies for the page's site (`HttpOnly` ones too).
    pub fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None).as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the window to `path` (its directory made).
    pub fn screenshot(&self, path: &Path) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshots' directory");
        }
        std::fs::write(path, bytes).expect("the screenshot written");
    }
}

/// Sends `request` and reads its JSON answer.
fn read(request: reqwest::blocking::RequestBuilder) -> Result<Value, String> {
    let text = request.send().and_then(|r| r.text()).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.client.delete(format!("{}/session/{}", self.base, self.session)).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
