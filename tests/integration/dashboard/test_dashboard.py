#!/usr/bin/env python3
"""The web dashboard (server/api_dashboard.c, server/dashboard/) end to end.

http:    the page and its files over plain HTTP: media types, ETag (a hash of the content) and
         304, HEAD, the security headers, 404 for unknown files, nothing inline or external.
browser: headless Chromium driven through Selenium against a real jazarid on 127.0.0.1 with the
         8xT4 topology fixture (declared GPUs run on the cpu fallback backend): token login (and
         a bad token's error), the cluster's GPUs with the job holding them, the queue with a
         pending job's reason and estimated start, the tenant's usage, a training job's log and
         its per-epoch charts, cancel, keyboard-only navigation, logout. Screenshots of every
         page go to --artifacts.

Usage: test_dashboard.py --build B --fixtures F --source S --artifacts DIR TEST [TEST...]
Skips (77) only when chromium or chromedriver is not installed."""

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
sys.path.insert(0, os.path.join(HERE, "..", "workloads"))
import test_service  # noqa: E402
from test_service import Service, run_tests  # noqa: E402

ARGS = None
ASSETS = ("app.js", "style.css", "favicon.svg", "index.html")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}


def raw(svc, method, path, headers=None):
    """(status, headers as a lower-cased dict, body bytes) of one request."""
    c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def source_of(name):
    with open(os.path.join(ARGS.source, "server", "dashboard", name), "rb") as f:
        return f.read()


def check_security_headers(h, where):
    csp = h.get("content-security-policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'self'"], (where, csp)
    assert directives.get("script-src") == ["'self'"], (where, csp)
    assert directives.get("frame-ancestors") == ["'none'"], (where, csp)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (where, csp)
    assert h.get("x-content-type-options") == "nosniff", (where, h)
    assert h.get("referrer-policy") == "no-referrer", (where, h)
    assert h.get("cache-control") == "no-cache", (where, h)


def test_http(svc):
    for name in ASSETS:
        path = "/" if name == "index.html" else "/ui/" + name
        st, h, body = raw(svc, "GET", path)
        assert st == 200, (path, st, body[:200])
        assert body == source_of(name), "%s is not server/dashboard/%s" % (path, name)
        assert h["content-type"] == TYPES[os.path.splitext(name)[1]], (path, h)
        check_security_headers(h, path)
        # The ETag is a hash of the content (embed.cmake): it changes exactly when the file does.
        etag = h.get("etag")
        assert etag == '"%s"' % hashlib.sha256(body).hexdigest()[:32], (path, etag)
        for inm in (etag, "W/" + etag, '"nope", ' + etag, "*"):
            st2, h2, b2 = raw(svc, "GET", path, {"If-None-Match": inm})
            assert st2 == 304 and b2 == b"", (path, inm, st2, b2[:100])
            assert h2.get("etag") == etag, (path, h2)
        st2, h2, b2 = raw(svc, "GET", path, {"If-None-Match": '"%s"' % ("0" * 32)})
        assert st2 == 200 and b2 == body, (path, st2)
        st3, h3, b3 = raw(svc, "HEAD", path)
        assert st3 == 200 and b3 == b"", (path, st3, b3[:100])
        assert int(h3["content-length"]) == len(body), (path, h3)
        assert h3["etag"] == etag and h3["content-type"] == h["content-type"], (path, h3)
        check_security_headers(h3, "HEAD " + path)
        if name.endswith((".html", ".js", ".css")):
            text = body.decode()
            # Nothing fetched from elsewhere (the SVG namespace is a name, not a fetch).
            urls = [u for u in re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text)
                    if "www.w3.org/2000/svg" not in u]
            assert not urls, (path, urls)
            assert "@import" not in text and "@font-face" not in text, path
    html = source_of("index.html").decode()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in a and not b.strip() for a, b in scripts), scripts
    assert not re.search(r"\son[a-z]+\s*=|\sstyle\s*=", html), "inline handler or style in index.html"
    # Unknown files and paths: JSON 404s naming what is missing; other methods 405.
    for path in ("/ui/nosuch.js", "/ui/%2e%2e%2fhttp.c", "/ui/..%2fapi.h", "/ui/INDEX.HTML"):
        st, h, body = raw(svc, "GET", path)
        j = json.loads(body)
        assert st == 404 and j["error"]["code"] == "not_found" and \
            j["error"]["field"] == "asset", (path, st, j)
        assert h["content-type"] == "application/json", (path, h)
    for path in ("/ui", "/ui/", "/ui/app.js/x", "/index.html"):
        st, h, body = raw(svc, "GET", path)
        assert st == 404, (path, st, body)
    st, h, body = raw(svc, "POST", "/")
    assert st == 405 and h.get("allow") == "GET, HEAD", (st, h, body)
    # The page is public; the data behind it is not.
    st, h, body = raw(svc, "GET", "/v1/jobs")
    assert st == 401, (st, body)


# --- the browser --------------------------------------------------------------------------

def import_selenium():
    try:
        import selenium  # noqa: F401
    except ImportError:
        # Debian's python3-selenium is for Debian's python3; ctest may run another one.
        deb = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(deb) and os.path.exists(deb) \
                and os.environ.get("JZ_DASHBOARD_REEXEC") != "1":
            os.environ["JZ_DASHBOARD_REEXEC"] = "1"
            os.execv(deb, [deb] + sys.argv)
        raise AssertionError("chromium is installed but the Selenium Python module is not "
                             "(install python3-selenium: scripts/install-deps.sh)")


class Browser:
    """Headless Chromium through chromedriver, with a profile folder of its own; quit() ends
    both (and the folder)."""

    def __init__(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
        self.profile = tempfile.mkdtemp(prefix="jazari-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium")
        for a in ("--headless=new", "--disable-gpu", "--user-data-dir=" + self.profile,
                  "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                  "--disable-background-networking", "--disable-dev-shm-usage"):
            opts.add_argument(a)
        if os.geteuid() == 0:
            opts.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = DriverService(executable_path=shutil.which("chromedriver"))
        self.driver = webdriver.Chrome(service=self.service, options=opts)
        self.driver.set_page_load_timeout(30)

    def quit(self):
        try:
            self.driver.quit()
        finally:
            proc = getattr(self.service, "process", None)
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def wait_for(what, fn, timeout=20):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # an element not there yet, a stale one redrawn
            last = e
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s (%s)" % (what, last))


def shot(d, name):
    """A screenshot of the whole page (the window grown to the page's height)."""
    height = d.execute_script("return Math.max(document.body.scrollHeight, "
                              "document.documentElement.scrollHeight)")
    d.set_window_size(1280, min(max(900, height + 40), 6000))
    time.sleep(0.2)
    os.makedirs(ARGS.artifacts, exist_ok=True)
    path = os.path.join(ARGS.artifacts, name + ".png")
    assert d.save_screenshot(path), path
    d.set_window_size(1280, 900)
    return path


def severe_logs(d, allow=()):
    out = []
    for e in d.get_log("browser"):
        if e.get("level") == "SEVERE" and not any(a in e.get("message", "") for a in allow):
            out.append(e["message"])
    return out


def active(d):
    return d.switch_to.active_element


def tab_to(d, pred, what, limit=60, shift=False):
    """Presses Tab (Shift+Tab) until pred(the focused element); returns it."""
    from selenium.webdriver.common.keys import Keys
    for _ in range(limit):
        el = active(d)
        if pred(el):
            return el
        (el.send_keys(Keys.SHIFT, Keys.TAB) if shift else el.send_keys(Keys.TAB))
    raise AssertionError("Tab never reached %s" % what)


def focus_ring_visible(d):
    """The focused element has a visible outline (the :focus-visible style)."""
    return d.execute_script(
        "const s = getComputedStyle(document.activeElement);"
        "return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;")


def shows_gpu_hours(text, x):
    """text (a cell of the tenants table) is x GPU-hours to the precision shown (3 decimals,
    two significant digits below 0.01, 1 decimal from 10)."""
    v = float(text.split()[-1])
    tol = 0.051 if abs(x) >= 10 else 0.00051 if abs(x) >= 0.01 else abs(x) * 0.051
    return abs(v - x) <= tol and (x == 0) == (v == 0)


def test_browser(svc):
    import test_workloads
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    data = os.path.join(svc.state, "fashion-subset")
    test_workloads.make_subset(data, n_train=600, n_test=200)
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="startup-a")
    st, j = svc.http("POST", "/v1/admin/credits", {"tenant": "physics", "gpu_hours": 50},
                     svc.admin)
    assert st == 201, (st, j)
    epochs = 3
    train = svc.submit(alice, {"plugin": "train", "name": "fmnist-tiny", "resources": {"gpus": 1},
                               "params": {"dataset": data, "layers": "32", "epochs": epochs,
                                          "batch_size": 64, "seed": 3}})
    tj = svc.wait(alice, train, timeout=240)
    assert tj["state"] == "SUCCEEDED", (tj, svc.http("GET", "/v1/jobs/%d/log" % train, token=alice))
    running = svc.submit(alice, {"plugin": "batch", "name": "holder",
                                 "params": {"argv": ["sh", "-c", "echo holding GPUs; i=0; "
                                                     "while [ $i -lt 600 ]; do i=$((i+1)); "
                                                     "echo tick $i; sleep 0.5; done"]},
                                 "resources": {"gpus": 2, "time_limit_s": 900}})
    svc.wait_running(alice, running)
    pending = svc.submit(alice, {"plugin": "batch", "name": "big",
                                 "params": {"argv": ["true"]},
                                 "resources": {"gpus": 8, "time_limit_s": 600}})
    pj = wait_for("the pending job's reason", lambda: (
        lambda x: x if x["state"] == "PENDING" and x.get("reason_code") not in (None, "new")
        else None)(svc.job(alice, pending)))
    rj = svc.job(alice, running)
    held = sorted(g["index"] for g in rj["gpus"])
    assert len(held) == 2, rj

    b = Browser()
    d = b.driver
    try:
        d.get(svc.url + "/")
        token_box = wait_for("the login form", lambda: d.find_element(By.ID, "token"))
        assert active(d) == token_box, "the token field does not have the focus"
        assert not d.find_element(By.ID, "logout").is_displayed()
        assert not d.find_element(By.ID, "nav").is_displayed()
        shot(d, "01-login")
        # A bad token: the API's error as text (status, code, message, field).
        token_box.send_keys("jz_" + "0" * 48 + Keys.ENTER)
        err = wait_for("the login error", lambda: d.find_element(By.CSS_SELECTOR,
                                                                 "#login-result .error"))
        assert err.get_attribute("role") == "alert", err.get_attribute("outerHTML")
        assert "401" in err.text and "unauthorized" in err.text and \
            "Authorization" in err.text, err.text
        assert d.execute_script("return sessionStorage.getItem('jazari.token')") is None
        shot(d, "02-login-error")
        severe_logs(d, allow=("401",))  # the refused whoami is logged by Chromium: drained here

        # Log in with the keyboard only.
        token_box = d.find_element(By.ID, "token")
        token_box.clear()
        token_box.send_keys(alice + Keys.ENTER)
        wait_for("the cluster page", lambda: d.find_element(By.CSS_SELECTOR,
                                                            "section.node li.gpu"))
        assert d.execute_script("return sessionStorage.getItem('jazari.token')") == alice
        assert "alice" in d.find_element(By.ID, "who-name").text

        # Cluster: every GPU of the node, grouped by NUMA node as the API says, the running
        # job on the GPUs it holds (linked), the others free.
        st, nodes = svc.http("GET", "/v1/nodes", token=alice)
        node = nodes["nodes"][0]
        sec = d.find_element(By.CSS_SELECTOR, "section.node[data-node='%s']" % node["name"])
        tiles = sec.find_elements(By.CSS_SELECTOR, "li.gpu")
        assert len(tiles) == len(node["gpus"]) == 8, (len(tiles), node["gpus"])
        for g in node["gpus"]:
            tile = sec.find_element(By.CSS_SELECTOR, "li.gpu[data-gpu='%d']" % g["index"])
            group = tile.find_element(By.XPATH, "ancestor::div[@class='numa']")
            assert group.get_attribute("data-numa") == str(g["numa"] if g["numa"] >= 0 else -1)
            assert g["pci_bus_id"] in tile.text and "GPU %d" % g["index"] in tile.text, tile.text
            links = tile.find_elements(By.CSS_SELECTOR, "a.holder")
            assert g["job"] == (running if g["index"] in held else None), g
            if g["index"] in held:
                assert len(links) == 1 and links[0].get_attribute("href").endswith(
                    "#/jobs/%d" % running), tile.get_attribute("outerHTML")
                assert "job %d" % running in links[0].text, links[0].text
            else:
                assert not links, tile.get_attribute("outerHTML")
                assert "gpu-free" in tile.get_attribute("class") and "free" in tile.text, \
                    tile.get_attribute("outerHTML")
        assert len(sec.find_elements(By.CSS_SELECTOR, "div.numa")) == \
            len({g["numa"] for g in node["gpus"]})
        shot(d, "03-cluster")

        # Keyboard only: the skip link comes first, then the pages; Enter follows a link.
        # As a keyboard user starts: a fresh load of the page (the token stays in the tab's
        # session), then Tab.
        d.refresh()
        wait_for("the cluster page", lambda: d.find_element(By.CSS_SELECTOR, "li.gpu"))
        ActionChains(d).send_keys(Keys.TAB).perform()
        assert active(d).get_attribute("id") == "skip-link", active(d).get_attribute("outerHTML")
        assert focus_ring_visible(d), "no visible focus on the skip link"
        rect = d.execute_script("return document.activeElement.getBoundingClientRect().toJSON()")
        assert rect["left"] >= 0 and rect["top"] >= 0 and rect["width"] > 0, rect
        link = tab_to(d, lambda e: e.get_attribute("id") == "nav-queue", "the Queue link")
        assert focus_ring_visible(d), "no visible focus on the Queue link"
        link.send_keys(Keys.ENTER)
        wait_for("the queue page", lambda: d.find_element(By.ID, "queue-table"))
        assert d.execute_script("return location.hash") == "#/queue"
        assert d.find_element(By.ID, "nav-queue").get_attribute("aria-current") == "page"
        assert active(d).tag_name == "h1", "focus did not move to the new page's heading"

        # Queue: both jobs, the pending one with its reason and estimated start. The scheduler
        # recomputes both on its full pass (every 10 s), which may fall between the page's read
        # and the test's: on a mismatch the page is read again (a few times at most).
        for attempt in range(4):
            prow = d.find_element(By.CSS_SELECTOR, "tr[data-job='%d']" % pending)
            assert prow.get_attribute("data-state") == "PENDING"
            reason = prow.find_element(By.CSS_SELECTOR, "td.reason").text
            est = prow.find_element(By.CSS_SELECTOR, "td.estimated")
            shown_est = (est.find_element(By.TAG_NAME, "time").get_attribute("datetime")
                         if est.find_elements(By.TAG_NAME, "time") else est.text)
            pj = svc.job(alice, pending)
            want_est = pj.get("estimated_start") or "unknown"
            if (pj["reason"] in reason and pj["reason_code"] in reason and
                    shown_est == want_est) or attempt == 3:
                break
            d.refresh()
            wait_for("the queue page again", lambda: d.find_element(By.ID, "queue-table"))
        assert pj["reason"] in reason and pj["reason_code"] in reason, (reason, pj)
        assert shown_est == want_est, (est.get_attribute("outerHTML"), pj)
        rrow = d.find_element(By.CSS_SELECTOR, "tr[data-job='%d']" % running)
        assert rrow.get_attribute("data-state") == "RUNNING" and "RUNNING" in rrow.text
        assert not d.find_elements(By.CSS_SELECTOR, "tr[data-job='%d']" % train)
        shot(d, "04-queue")

        # Tab to the pending job's link, Enter: its page.
        jl = tab_to(d, lambda e: e.get_attribute("href") and
                    e.get_attribute("href").endswith("#/jobs/%d" % pending), "the job's link")
        jl.send_keys(Keys.ENTER)
        wait_for("the pending job's page", lambda: "PENDING" in d.find_element(
            By.ID, "job-record").text)
        assert pj["reason"] in d.find_element(By.ID, "job-record").text
        # Cancel it with the keyboard (the user's own job).
        btn = tab_to(d, lambda e: e.get_attribute("id") == "cancel-job", "the cancel button")
        btn.send_keys(Keys.ENTER)
        wait_for("the cancelled state", lambda: "CANCELLED" in d.find_element(
            By.ID, "job-record").text)
        assert svc.job(alice, pending)["state"] == "CANCELLED"
        assert not d.find_elements(By.ID, "cancel-job")

        # Tenants (by keyboard again: Shift+Tab back up to the navigation).
        tl = tab_to(d, lambda e: e.get_attribute("id") == "nav-tenants", "the Tenants link",
                    shift=True)
        tl.send_keys(Keys.ENTER)
        wait_for("the tenants page", lambda: d.find_element(By.ID, "tenants-table"))
        st, usage = svc.http("GET", "/v1/usage", token=alice)
        t = usage["tenants"][0]
        assert t["tenant"] == "physics" and t["metered"], usage
        row = d.find_element(By.CSS_SELECTOR, "tr[data-tenant='physics']")
        cells = {c: row.find_element(By.CSS_SELECTOR, "td." + c).text
                 for c in ("granted", "used", "balance", "jobs")}
        for c in ("granted", "used", "balance"):
            assert shows_gpu_hours(cells[c], t[c + "_gpu_hours"]), (c, cells, t)
        assert cells["jobs"] == str(t["jobs"]), (cells, t)
        assert t["used_gpu_hours"] > 0, t  # the training run was charged
        assert row.find_element(By.TAG_NAME, "meter").get_attribute("aria-label")
        shot(d, "05-tenants")

        # The training job: its log and one chart point per epoch for each metric.
        d.get(svc.url + "/#/jobs/%d" % train)
        log = wait_for("the train log", lambda: (lambda e: e if "train: epoch %d/%d" % (
            epochs, epochs) in e.text else None)(d.find_element(By.ID, "job-log")))
        st, text = svc.http("GET", "/v1/jobs/%d/log" % train, token=alice)
        assert text.strip().splitlines()[-1] in log.text, (text[-300:], log.text[-300:])
        assert log.get_attribute("aria-label") and log.get_attribute("tabindex") == "0"
        for chart, names in (("chart-loss", ["train_loss"]),
                             ("chart-accuracy", ["train_accuracy", "test_accuracy"])):
            fig = d.find_element(By.ID, chart)
            series = fig.get_attribute("data-series").split(",")
            assert series[:len(names)] == names, (chart, series)
            svg = fig.find_element(By.CSS_SELECTOR, "svg.plot")
            assert svg.get_attribute("role") == "img" and svg.get_attribute("aria-labelledby")
            for i, n in enumerate(series):
                pts = svg.find_elements(By.CSS_SELECTOR, ".pt.s%d" % i)
                assert len(pts) == epochs, (chart, n, len(pts))
            # The last epoch's value in the chart's table is the job's final metric.
            cells = fig.find_elements(By.CSS_SELECTOR, "table.chart-data tbody tr")
            assert len(cells) == epochs, len(cells)
        last = tj["metrics"]["train_accuracy"]
        fig = d.find_element(By.ID, "chart-accuracy")
        vals = d.execute_script(
            "return [...arguments[0].querySelectorAll('table.chart-data tbody tr')]"
            ".map(r => r.children[1].textContent)", fig)
        assert abs(float(vals[-1]) - last) < 1e-3, (vals, last)
        assert not d.find_elements(By.ID, "cancel-job")  # it has ended
        shot(d, "06-job-train")
        # No keyboard trap: Tab from the top passes every control (the log, the charts'
        # number tables) and leaves the page.
        d.refresh()
        wait_for("the train log", lambda: "epoch %d/%d" % (epochs, epochs) in d.find_element(
            By.ID, "job-log").text)
        seen = []
        for _ in range(80):
            ActionChains(d).send_keys(Keys.TAB).perform()
            el = active(d)
            if el.tag_name == "body":
                break
            seen.append(el.get_attribute("id") or el.tag_name)
        else:
            raise AssertionError("Tab never left the page: %s" % seen[-10:])
        assert seen[0] == "skip-link" and "job-log" in seen, seen
        assert "chart-loss-numbers-s" in seen and "chart-accuracy-numbers-s" in seen, seen

        # The running job: its live log grows into the page; it can be cancelled.
        d.get(svc.url + "/#/jobs/%d" % running)
        first = wait_for("the running job's log", lambda: (lambda t: t if "holding GPUs" in t
                                                           and "tick" in t else None)(
            d.find_element(By.ID, "job-log").text))
        n0 = max(int(x) for x in re.findall(r"tick (\d+)", first))
        # The page follows the log while the job runs: later lines arrive without a reload.
        wait_for("new log lines", lambda: max(int(x) for x in re.findall(
            r"tick (\d+)", d.find_element(By.ID, "job-log").text)) >= n0 + 3)
        assert d.find_element(By.ID, "cancel-job").is_displayed()
        shot(d, "07-job-running")
        errors = severe_logs(d)
        assert not errors, errors  # no CSP refusal, no script error, no failed request

        # Another user sees the GPUs as held without seeing by whom.
        d.find_element(By.ID, "logout").click()
        wait_for("the login page", lambda: d.find_element(By.ID, "token"))
        assert d.execute_script("return sessionStorage.getItem('jazari.token')") is None
        assert not d.find_element(By.ID, "nav").is_displayed()
        d.find_element(By.ID, "token").send_keys(bob + Keys.ENTER)
        sec = wait_for("bob's cluster page", lambda: d.find_element(By.CSS_SELECTOR,
                                                                    "section.node"))
        assert not sec.find_elements(By.CSS_SELECTOR, "a.holder"), sec.get_attribute("outerHTML")
        for i in range(8):
            tile = sec.find_element(By.CSS_SELECTOR, "li.gpu[data-gpu='%d']" % i)
            want = "job %d · another user's" % running if i in held else "free"
            assert tile.find_element(By.CSS_SELECTOR, ".holder").text == want, tile.text
        d.get(svc.url + "/#/jobs/%d" % running)
        err = wait_for("the 404", lambda: d.find_element(By.CSS_SELECTOR, "#main .error"))
        assert "404" in err.text and "not_found" in err.text and "(field: id)" in err.text, err.text
        shot(d, "08-other-user-404")
        # Dark when the system asks for it.
        light = d.execute_script("return getComputedStyle(document.body).backgroundColor")
        d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark"}]})
        d.get(svc.url + "/#/cluster")
        wait_for("the cluster page", lambda: d.find_element(By.CSS_SELECTOR, "li.gpu"))
        dark = d.execute_script("return getComputedStyle(document.body).backgroundColor")
        rgb = [int(v) for v in re.findall(r"\d+", dark)[:3]]
        assert dark != light and sum(rgb) < 150, (light, dark)
        shot(d, "09-cluster-dark")
    finally:
        b.quit()
    svc.http("POST", "/v1/jobs/%d/cancel" % running, token=alice)


def make_service(name):
    return Service()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--artifacts", required=True)
    p.add_argument("tests", nargs="+")
    ARGS = p.parse_args()
    ARGS.build = os.path.abspath(ARGS.build)
    ARGS.fixtures = os.path.abspath(ARGS.fixtures)
    test_service.ARGS = ARGS
    if "browser" in ARGS.tests:
        if not (shutil.which("chromium") and shutil.which("chromedriver")):
            print("skipped: chromium and chromedriver are not installed "
                  "(Debian: chromium chromium-driver python3-selenium)")
            sys.exit(77)
        import_selenium()
        if not os.path.exists(os.path.join("/usr/share/datasets/fashion-mnist",
                                           "train-images-idx3-ubyte.gz")):
            raise SystemExit("no Fashion-MNIST at /usr/share/datasets/fashion-mnist "
                             "(the training job of the browser test reads it)")
    failed = run_tests(ARGS.tests, globals(), make_service)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
