//! The operator console in a real browser: Debian's headless Chromium,
//! driven through ChromeDriver, against a real `flagsd serve` with three
//! batches on test servers (one clean, with a hostile country name; one
//! whose server answers every request with a hostile error; one slow).
//! Without Chromium it prints `skipped: …`; CI installs it and sets
//! `FLAGSD_REQUIRE_BROWSER=1`.
//!
//! Screenshots of the batches page and of a run's page go to
//! `target/console-screenshots/`; with `FLAGSD_CONSOLE_DOCS=1` also to
//! `docs/img/`, which docs/console.md shows.

use std::path::{Path, PathBuf};

use flagsd::testserver::{DelayRange, TestServerOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::*;
use crate::webdriver::{Browser, Browsers};

const TOKEN: &str = "browser-t0ken";

/// Markup a page must show as text and never run.
const HOSTILE: &str = "\"><img src=x onerror=window.pwned=1>";

/// A server that answers every request `500` with [`HOSTILE`] as its
/// reason phrase.
fn hostile_server() -> String {
    let addr = tcp_server(|mut stream| async move {
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).await;
        let answer = format!("HTTP/1.1 500 {HOSTILE}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(answer.as_bytes()).await;
    });
    format!("http://{addr}/flags")
}

/// Where screenshots go: `target/console-screenshots/`, and `docs/img/`
/// when asked.
fn screenshot_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut dirs = vec![target.join("console-screenshots")];
    if std::env::var("FLAGSD_CONSOLE_DOCS").as_deref() == Ok("1") {
        dirs.push(root.join("docs/img"));
    }
    dirs
}

fn screenshot(browser: &Browser, name: &str) {
    for dir in screenshot_dirs() {
        browser.screenshot(&dir.join(name));
    }
}

/// `text` as a JavaScript string literal.
fn js(text: &str) -> String {
    serde_json::to_string(text).expect("a string")
}

/// A script that is true once the element `css` selects shows text that
/// starts with `start`.
fn shows(css: &str, start: &str) -> String {
    format!("return (document.querySelector({})?.textContent ?? '').startsWith({});", js(css), js(start))
}

/// The selector of batch `name`'s row, and of a cell or button in it.
fn row(name: &str, rest: &str) -> String {
    format!("#batches tr[data-batch=\"{name}\"] {rest}")
}

#[test]
fn an_operator_runs_watches_inspects_and_cancels_batches_in_the_console() {
    let Some(browsers) = Browsers::find() else { return };
    // The servers: countries with markup in a name, errors with markup, and
    // a slow one.
    let countries = country_root(&[("br", &format!("{HOSTILE:?}")), ("ar", "\"Argentina\""), ("cl", "\"Chile\"")]);
    let clean =
        server(TestServerOptions { root: Some(countries.path().to_path_buf()), ..TestServerOptions::default() });
    let hostile = hostile_server();
    let slow = server(TestServerOptions {
        delay: Some("1".parse::<DelayRange>().expect("a delay")),
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "token", &format!("{TOKEN}\n"));
    let config = format!(
        "[state]\ndir = \"state\"\n[defaults]\nretries = 0\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"token\"\n\
         [[batch]]\nname = \"world\"\ncodes = [\"BR\", \"AR\", \"CL\"]\nserver = \"{}\"\nnaming = \"country\"\noutput = \"out-world\"\n\
         [[batch]]\nname = \"flaky\"\ncodes = [\"BR\", \"AR\", \"CN\"]\nserver = \"{hostile}\"\noutput = \"out-flaky\"\n\
         [[batch]]\nname = \"slow\"\ncodes = \"all\"\nserver = \"{}\"\nmax_req = 1\noutput = \"out-slow\"\n",
        clean.url(),
        slow.url()
    );
    write_file(dir.path(), "flagsd.toml", &config);
    let daemon = Daemon::start(dir.path(), &[]);
    let addr = daemon.admin_addr();
    let console = format!("http://{addr}/");
    let browser = Browser::start(&browsers, 1280, 900);

    // Sign in.
    browser.open(&console);
    browser.wait_for("the sign-in form", "return !document.getElementById('sign-in').hidden;");
    browser.type_into("#token", "not the token");
    browser.click("#sign-in-button");
    browser.wait_for("a refused sign-in", "return document.getElementById('sign-in-error').textContent.length > 0;");
    assert!(browser.text("#sign-in-error").contains("not valid"), "{}", browser.text("#sign-in-error"));
    browser.eval("document.getElementById('token').value = ''; return true;");
    browser.type_into("#token", TOKEN);
    browser.click("#sign-in-button");
    browser.wait_for("the three batches", "return document.querySelectorAll('#batches tbody tr').length === 3;");
    browser.wait_for("the health", "return document.getElementById('health').textContent === 'ready';");
    let cookies = browser.cookies();
    let session = cookies.iter().find(|c| c["name"] == "flagsd_session").expect("the session cookie").clone();
    assert_eq!(
        (session["httpOnly"].as_bool(), session["sameSite"].as_str()),
        (Some(true), Some("Strict")),
        "{session}"
    );
    assert_eq!(browser.eval("return document.cookie;"), "", "the page's script cannot read the session");

    // Run now, and the run finishes on the page without a reload.
    browser.eval("window.sameDocument = true; return true;");
    browser.click(&row("flaky", "button[data-action=run]"));
    let last_run = |batch: &str| row(batch, "td a[href^='#/runs/']");
    browser.wait_for("flaky's run finished", &shows(&last_run("flaky"), "finished"));
    assert!(browser.text("#notice").starts_with("Started run "), "{}", browser.text("#notice"));
    assert_eq!(browser.eval("return window.sameDocument === true;"), true, "the page was reloaded");
    browser.click(&row("world", "button[data-action=run]"));
    browser.wait_for("world's run finished", &shows(&last_run("world"), "finished"));
    screenshot(&browser, "batches.png");

    // The run's page: the causes first, failed codes first, markup as text.
    browser.click(&last_run("flaky"));
    browser.wait_for("the run's codes", "return document.querySelectorAll('#codes tbody tr').length === 3;");
    let causes = browser.text("#run-causes");
    assert_eq!(causes, "Causes: 3 × HTTP 500", "{causes}");
    let message = browser.text("#codes tbody tr:first-child td.message");
    assert!(message.contains(HOSTILE), "{message}");
    assert!(browser.eval("return document.querySelectorAll('#codes tbody tr.failed').length === 3;") == true);
    screenshot(&browser, "run.png");
    browser.click(&last_run("world"));
    browser.wait_for("world's codes", "return document.querySelectorAll('#codes tbody tr').length === 3;");
    let files =
        browser.eval("return [...document.querySelectorAll('#codes td.file')].map(td => td.textContent).join('\\n');");
    assert!(files.as_str().is_some_and(|f| f.contains("<img src=x onerror=window.pwned=1>")), "{files}");
    assert_eq!(browser.eval("return document.querySelectorAll('main img').length;"), 0, "markup became elements");
    assert_eq!(browser.eval("return window.pwned === undefined;"), true, "markup ran");

    // A slow run: it shows its progress, and Cancel stops it.
    browser.click(&row("slow", "button[data-action=run]"));
    let progress = js(&row("slow", "td.running"));
    let progress = format!("return /^\\d+\\/194 · /.test(document.querySelector({progress})?.textContent ?? '');");
    browser.wait_for("slow's progress", &progress);
    browser.click(&row("slow", "button[data-action=cancel]"));
    browser.wait_for("the cancel", "return document.getElementById('notice').textContent.startsWith('Cancelled run');");
    browser.wait_for("slow's run cancelled", &shows(&last_run("slow"), "cancelled"));

    // Another site cannot make the browser change anything: its request
    // carries the site's Origin and is refused (the run stays as it was).
    let runs_before = daemon.log().matches("run started").count();
    browser.open(&format!("{}/", clean.url().trim_end_matches("/flags")));
    let sent = browser.eval(&format!(
        "fetch('http://{addr}/batches/world/run', {{method: 'POST', credentials: 'include', mode: 'no-cors'}}); return true;"
    ));
    assert_eq!(sent, true);
    let refused = wait_until(LONG, || daemon.log().contains("admin request forbidden"));
    assert!(refused, "{}", daemon.log());
    assert_eq!(daemon.log().matches("run started").count(), runs_before, "{}", daemon.log());

    // Sign out: the page asks for the token again, and the cookie is dead.
    browser.open(&console);
    browser.wait_for("the console again", "return !document.getElementById('app').hidden;");
    browser.click("#sign-out");
    browser.wait_for("the sign-in form", "return !document.getElementById('sign-in').hidden;");
    let cookie = format!("flagsd_session={}", session["value"].as_str().unwrap_or_default());
    assert_eq!(raw_request(&addr, "GET", "/batches", &[("Cookie", &cookie)]).code(), 401);
}

#[test]
fn the_console_fits_a_narrow_screen_and_the_keyboard() {
    let Some(browsers) = Browsers::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n[[batch]]\nname = \"demo\"\ncodes = [\"BR\"]\nserver = \"DEMO\"\n";
    write_file(dir.path(), "flagsd.toml", config);
    let daemon = Daemon::start(dir.path(), &[]);
    let browser = Browser::start(&browsers, 360, 740);
    // Without a token (loopback only), the console signs itself in.
    browser.open(&format!("http://{}/", daemon.admin_addr()));
    browser.wait_for("the batch", "return document.querySelectorAll('#batches tbody tr').length === 1;");
    // Nothing wider than the screen but the tables' own scrolling boxes.
    let overflow = browser.eval("return document.documentElement.scrollWidth <= window.innerWidth;");
    assert_eq!(overflow, true, "the page scrolls sideways at 360 px");
    // Run now is a real button: it takes the focus, and Enter presses it.
    let reached = browser.eval(
        "const button = document.querySelector('#batches button[data-action=run]'); \
         button.focus(); return document.activeElement === button;",
    );
    assert_eq!(reached, true);
    browser.type_into("#batches button[data-action=run]", "\u{E007}");
    browser.wait_for(
        "the run's end",
        "return /finished/.test(document.querySelector('#batches td a')?.textContent ?? '');",
    );
    // Readable in both schemes: dark text on light, light text on dark.
    let lightness = "const sum = c => c.match(/\\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0); \
                     const style = getComputedStyle(document.body); \
                     return [sum(style.backgroundColor), sum(style.color)];";
    for (scheme, dark_background) in [("light", false), ("dark", true)] {
        browser.prefer_color_scheme(scheme);
        let sums = browser.eval(lightness);
        let (background, text) = (sums[0].as_i64().unwrap_or(-1), sums[1].as_i64().unwrap_or(-1));
        assert_eq!(background < text, dark_background, "{scheme}: background {background}, text {text}");
        assert!((background - text).abs() > 300, "{scheme}: too little contrast ({background} against {text})");
    }
}

#[test]
fn a_fleet_nodes_console_shows_its_fleet_and_a_run_in_progress() {
    let Some(browsers) = Browsers::find() else { return };
    let Some(nats) = crate::natsd::NatsServer::start() else { return };
    let slow = server(TestServerOptions {
        delay: Some("0.2".parse::<DelayRange>().expect("a delay")),
        ..TestServerOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = crate::fleetctl::config(dir.path(), &[nats.url()], &slow.url(), "\"all\"", "max_req = 2\n");
    let node = crate::fleetctl::Node::start(&config, "a", &[("FLAGSD_ADMIN__LISTEN", "0")]);
    node.wait_joined();
    let addr = node.admin_addr();
    let browser = Browser::start(&browsers, 1280, 900);
    browser.open(&format!("http://{addr}/"));
    browser.wait_for("the fleet's node", "return document.querySelector('#nodes tbody th')?.textContent === 'a';");
    assert!(browser.text("#fleet-name").starts_with(crate::fleetctl::FLEET), "{}", browser.text("#fleet-name"));
    assert!(browser.text("#about").contains(crate::fleetctl::FLEET), "{}", browser.text("#about"));
    // A run of the fleet shows its progress, read from the queue.
    browser.click(&row("world", "button[data-action=run]"));
    let progress = format!(
        "return /^\\d+\\/194 · /.test(document.querySelector({})?.textContent ?? '');",
        js(&row("world", "td.running"))
    );
    browser.wait_for("the run's progress", &progress);
    browser.click(&row("world", "button[data-action=cancel]"));
    browser.wait_for("the cancel", "return document.getElementById('notice').textContent.startsWith('Cancelled run');");
}
