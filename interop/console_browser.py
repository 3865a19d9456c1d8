"""The web console in a real browser: headless Chromium (Debian chromium, chromium-driver)
driven by Selenium, against a running lwm2m-server with a simulated device registered.

Run by console_browser.sh, which starts the server and the device; standalone:

    python3 interop/console_browser.py --url http://127.0.0.1:8080/ --endpoint sim-000000 \
        [--token TOKEN] --artifacts target/interop-artifacts

As an operator would: give the bearer token when the page asks for it (with --token), find
the device by its name in the device list, open it, read the Manufacturer (/3/0/0), write
the UTC Offset (/3/0/14) through the inline editor and read it back, execute the
Registration Update Trigger (/1/0/8) and see the Update arrive, observe the temperature
sensor's value (/3303/0/5700) and see notifications arrive in the page, both in the
resource's value and in the live event panel; read from a sleeping device (with
--queue-endpoint); upload a firmware package and start a campaign (with --firmware). The page must
raise no Content-Security-Policy violation and no script error. Screenshots go to the
artifacts directory (console.png at the end, console-observe.png with the notifications,
console-firmware.png with the campaign, failure-N.png when a step fails), and the browser's
console log beside them.

Each step prints PASS or FAIL; the last line is "browser: N passed, M failed"; the exit
status is 1 if any step failed.
"""

import argparse
import os
import shutil
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 20  # seconds any one thing may take to show up


def find_binary(names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


def make_driver(chromium, chromedriver):
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1600,1200",
        "--no-first-run",
        "--disable-extensions",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver is given: Selenium must not try to download one (no network here).
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)


class Run:
    def __init__(self, driver, artifacts):
        self.d = driver
        self.artifacts = artifacts
        self.passed = 0
        self.failed = 0
        self.logs = []

    def by(self, testid):
        return self.d.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

    def wait(self, what, cond, timeout=WAIT):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2).until(lambda d: cond())
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    def text(self, testid):
        try:
            return self.by(testid).text.strip()
        except WebDriverException:
            return None

    def step(self, name, fn):
        try:
            detail = fn()
            print(f"PASS: {name}" + (f" ({detail})" if detail else ""), flush=True)
            self.passed += 1
            return True
        except (AssertionError, WebDriverException) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"FAIL: {name}: {msg}", flush=True)
            self.failed += 1
            shot = os.path.join(self.artifacts, f"failure-{self.failed}.png")
            try:
                self.d.save_screenshot(shot)
                print(f"  screenshot: {shot}", flush=True)
            except WebDriverException:
                pass
            return False

    def browser_log(self):
        try:
            entries = self.d.get_log("browser")
        except WebDriverException:
            entries = []
        self.logs.extend(entries)
        return entries


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the server's HTTP base URL")
    ap.add_argument("--endpoint", required=True, help="a registered simulated device")
    ap.add_argument("--manufacturer", default="", help="the expected /3/0/0, if known")
    ap.add_argument("--artifacts", default="target/interop-artifacts")
    ap.add_argument("--token", default="", help="the API's bearer token, if it needs one")
    ap.add_argument("--queue-endpoint", default="", help="a registered device in queue mode, mostly asleep")
    ap.add_argument("--firmware", default="", help="a file to upload as a firmware package and update --endpoint with")
    args = ap.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)

    chromium = find_binary(["chromium", "chromium-browser", "google-chrome"])
    chromedriver = find_binary(["chromedriver"])
    if not chromium or not chromedriver:
        print("SKIP: chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver)")
        return 0

    driver = make_driver(chromium, chromedriver)
    run = Run(driver, args.artifacts)
    ep = args.endpoint
    base = args.url.rstrip("/")
    try:
        run_steps(run, base, ep, args.manufacturer, args.token, args.queue_endpoint, args.firmware)
    finally:
        run.browser_log()
        with open(os.path.join(args.artifacts, "console-browser.log"), "w") as f:
            for e in run.logs:
                f.write(f"{e.get('level')} {e.get('message')}\n")
        final = os.path.join(args.artifacts, "console.png")
        try:
            # The whole event panel, and the page from its top.
            driver.execute_script("const f = document.getElementById('event-filter'); if (f) { f.value = ''; f.dispatchEvent(new Event('input')); } window.scrollTo(0, 0);")
            driver.save_screenshot(final)
            print(f"screenshot: {final}")
        except WebDriverException as e:
            print(f"no screenshot: {e}")
        driver.quit()
    print(f"browser: {run.passed} passed, {run.failed} failed")
    return 1 if run.failed else 0


def run_steps(run, base, ep, manufacturer, token, qep, firmware):
    d = run.d

    def open_console():
        d.get(base + "/#/devices")
        asked = False
        if token:
            # The API answers 401: the page asks for the token, once, in its dialog.
            box = run.wait("the token dialog", lambda: d.find_element(By.CSS_SELECTOR, "#token-dialog[open] #token-input"))
            box.send_keys(token)
            d.find_element(By.ID, "token-submit").click()
            asked = True
        run.wait("the page to start", lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
        run.wait("the event stream to connect", lambda: d.find_element(By.ID, "event-status").text == "live")
        if token:
            kept = d.execute_script("return sessionStorage.getItem('lwm2m-console-token');")
            assert kept == token, "the token is not kept in sessionStorage"
            assert not d.find_elements(By.CSS_SELECTOR, "#token-dialog[open]"), "the dialog asks again"
        return "asked for the token once" if asked else d.title

    if not run.step("the console loads and its event stream connects", open_console):
        return

    def find_device():
        box = d.find_element(By.ID, "device-search")
        box.clear()
        box.send_keys(ep)
        # The search narrows the list to the prefix: the device's row and no other.
        def only_matching():
            eps = d.execute_script("return [...document.querySelectorAll('#device-rows tr')].map((r) => r.dataset.ep);")
            return ep in eps and all(e.startswith(ep) for e in eps)

        run.wait(f"the list to show {ep} and only names starting with it", only_matching)
        row = run.by(f"device-row-{ep}")
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells[2] in ("1.0", "1.1", "1.2"), f"LwM2M version cell {cells[2]!r}"
        row.find_element(By.TAG_NAME, "a").click()
        run.wait("the device's objects", lambda: d.find_elements(By.CSS_SELECTOR, '[data-testid="resource-3-0-0"]'))
        return " | ".join(cells)

    if not run.step(f"search finds {ep} and opens it", find_device):
        return

    def read_manufacturer():
        run.by("read-3-0-0").click()
        run.wait("a value in /3/0/0", lambda: run.text("value-3-0-0"))
        value = run.text("value-3-0-0")
        if manufacturer:
            assert value == manufacturer, f"/3/0/0 is {value!r}, expected {manufacturer!r}"
        status = run.by("status-3-0-0")
        assert "ok" in status.get_attribute("class").split(), f"status {status.text!r}"
        return f"/3/0/0 = {value!r}, {status.text}"

    run.step("Read /3/0/0 Manufacturer", read_manufacturer)

    def write_and_read_back():
        new = "+02:00"
        run.by("write-3-0-14").click()
        box = run.wait("the editor of /3/0/14", lambda: d.find_element(By.CSS_SELECTOR, '[data-testid="input-3-0-14"]'))
        box.clear()
        box.send_keys(new)
        run.by("submit-3-0-14").click()
        run.wait(
            "the write's outcome",
            lambda: any(k in run.by("status-3-0-14").get_attribute("class").split() for k in ("ok", "error")),
        )
        status = run.by("status-3-0-14")
        assert "ok" in status.get_attribute("class").split(), f"write answered {status.text!r}"
        written = status.text
        # Forget what the page shows, then read the device again: the value must come back.
        d.execute_script("document.querySelector('[data-testid=\"value-3-0-14\"]').textContent = '';")
        d.execute_script("document.querySelector('[data-testid=\"status-3-0-14\"]').className = 'status';")
        run.by("read-3-0-14").click()
        run.wait("the read-back of /3/0/14", lambda: run.text("value-3-0-14"))
        got = run.text("value-3-0-14")
        assert got == new, f"read back {got!r}, wrote {new!r}"
        return f"write {written}, read back {got!r}"

    run.step("Write /3/0/14 UTC Offset and read it back", write_and_read_back)

    def execute_update_trigger():
        # Registration Update Trigger (/1/0/8): the device answers, then sends an Update,
        # which the page hears as an UPDATED event.
        sel = f'#event-list li[data-kind="UPDATED"][data-ep="{ep}"]'
        before = len(d.find_elements(By.CSS_SELECTOR, sel))
        d.execute_script("document.querySelector('[data-testid=\"object-1\"]').open = true;")
        run.by("exec-1-0-8").click()
        run.wait(
            "the Execute's outcome",
            lambda: any(k in run.by("status-1-0-8").get_attribute("class").split() for k in ("ok", "error")),
        )
        status = run.by("status-1-0-8")
        assert "ok" in status.get_attribute("class").split(), f"execute answered {status.text!r}"
        run.wait("the device's Update in the event panel", lambda: len(d.find_elements(By.CSS_SELECTOR, sel)) > before)
        return status.text

    run.step("Execute /1/0/8 Registration Update Trigger and see the Update", execute_update_trigger)

    def observe_sensor():
        path = "3303-0-5700"
        run.wait("the sensor object", lambda: d.find_elements(By.CSS_SELECTOR, f'[data-testid="resource-{path}"]'))
        # The sensor's object may be folded: open it so that the button can be clicked.
        d.execute_script("document.querySelector('[data-testid=\"object-3303\"]').open = true;")
        run.by(f"observe-{path}").click()
        run.wait(
            "the observe's outcome",
            lambda: any(k in run.by(f"status-{path}").get_attribute("class").split() for k in ("ok", "error")),
        )
        status = run.by(f"status-{path}")
        assert "ok" in status.get_attribute("class").split(), f"observe answered {status.text!r}"
        sel = f'#event-list li[data-kind="NOTIFICATION"][data-ep="{ep}"]'
        before = len(d.find_elements(By.CSS_SELECTOR, sel))
        first = run.text(f"value-{path}")
        # The simulator moves the value every second; two notifications must arrive.
        run.wait("two notifications in the event panel", lambda: len(d.find_elements(By.CSS_SELECTOR, sel)) >= before + 2, timeout=30)
        # The value cell and the newest notification, read at one instant (more keep coming).
        summary, value, count = d.execute_script(
            "const n = document.querySelectorAll(arguments[0]);"
            "return [n[0].querySelector('.ev-sum').textContent,"
            " document.querySelector(arguments[1]).textContent, n.length];",
            sel,
            f'[data-testid="value-{path}"]',
        )
        assert summary.startswith("/3303/0/5700 = "), f"the newest notification says {summary!r}"
        note_value = summary.split("=", 1)[1].strip()
        assert value == note_value, f"value cell {value!r}, newest notification {note_value!r}"
        observations = d.find_element(By.ID, "device-observations").text
        assert "/3303/0/5700" in observations, f"observations shown: {observations!r}"
        d.execute_script("arguments[0].scrollIntoView({block: 'center'});", run.by(f"resource-{path}"))
        d.save_screenshot(os.path.join(run.artifacts, "console-observe.png"))
        return f"{count - before} notifications, value {first!r} -> {value!r}"

    run.step("Observe /3303/0/5700 and see live notifications", observe_sensor)

    def event_filter():
        # Each event once: one stream, not one more per token given or view opened.
        ids = d.execute_script("return [...document.querySelectorAll('#event-list li')].map((e) => e.dataset.id);")
        dup = sorted({i for i in ids if i and ids.count(i) > 1})
        assert not dup, f"events shown more than once: {dup[:10]}"
        box = d.find_element(By.ID, "event-filter")
        box.clear()
        box.send_keys("no-such-endpoint")
        visible = [e for e in d.find_elements(By.CSS_SELECTOR, "#event-list li") if e.is_displayed()]
        assert not visible, f"{len(visible)} events still shown"
        box.clear()
        box.send_keys(ep)
        visible = [e for e in d.find_elements(By.CSS_SELECTOR, "#event-list li") if e.is_displayed()]
        assert visible, "no event shown for the device"
        return f"{len(visible)} events of {ep}"

    run.step("the event panel filters by endpoint", event_filter)

    def cancel_observe():
        path = "3303-0-5700"
        run.by(f"cancel-{path}").click()
        run.wait(
            "the cancel's outcome",
            lambda: any(k in run.by(f"status-{path}").get_attribute("class").split() for k in ("ok", "error")),
        )
        status = run.by(f"status-{path}")
        assert "ok" in status.get_attribute("class").split(), f"cancel answered {status.text!r}"
        run.wait("the observation to leave the list", lambda: "/3303/0/5700" not in d.find_element(By.ID, "device-observations").text)
        return None

    run.step("Cancel the observation", cancel_observe)

    def queued_read():
        d.execute_script("location.hash = arguments[0];", "#/device/" + qep)
        run.wait(f"the objects of {qep}", lambda: d.find_elements(By.CSS_SELECTOR, '[data-testid="resource-3-0-0"]'))
        run.wait(f"{qep} shown as queue mode", lambda: run.text("reg-queuemode") == "yes")
        # The device may wake between the page seeing it asleep and the Read: then the answer
        # is immediate, and the next sleep is tried (it wakes 2 s out of every 6).
        for attempt in range(1, 4):
            run.wait(f"{qep} to be shown asleep", lambda: run.text("reg-state") == "sleeping", timeout=30)
            run.by("read-3-0-0").click()
            run.wait(
                "the Read's first answer",
                lambda: any(k in run.by("status-3-0-0").get_attribute("class").split() for k in ("queued", "ok", "error")),
            )
            classes = run.by("status-3-0-0").get_attribute("class").split()
            if "queued" in classes:
                break
            assert "ok" in classes, f"the Read answered {run.text('status-3-0-0')!r}"
            d.execute_script("document.querySelector('[data-testid=\"value-3-0-0\"]').textContent = '';")
        else:
            raise AssertionError("the device answered at once three times: never asleep")
        queued = run.text("status-3-0-0")
        assert queued.startswith("queued"), f"status {queued!r}"
        run.wait(
            "the queued Read's result (the device wakes every 6 s)",
            lambda: "ok" in run.by("status-3-0-0").get_attribute("class").split(),
            timeout=40,
        )
        value = run.text("value-3-0-0")
        if manufacturer:
            assert value == manufacturer, f"/3/0/0 is {value!r}, expected {manufacturer!r}"
        return f"{queued!r}, then /3/0/0 = {value!r} (attempt {attempt})"

    if qep:
        run.step("a sleeping device's Read shows queued, then its value when it wakes", queued_read)

    def firmware_campaign():
        d.execute_script("location.hash = '#/firmware';")
        run.wait("the firmware page", lambda: d.find_element(By.ID, "view-firmware").is_displayed())
        d.find_element(By.ID, "package-file").send_keys(os.path.abspath(firmware))
        d.find_element(By.ID, "package-version").send_keys("9.9.9")
        d.find_element(By.ID, "package-name").send_keys("console-test")
        d.find_element(By.ID, "package-upload-button").click()
        run.wait(
            "the upload's outcome",
            lambda: any(k in d.find_element(By.ID, "package-status").get_attribute("class").split() for k in ("ok", "error")),
        )
        status = d.find_element(By.ID, "package-status")
        assert "ok" in status.get_attribute("class").split(), f"upload: {status.text!r}"
        run.wait("the package in the list", lambda: "9.9.9" in d.find_element(By.ID, "package-rows").text)
        run.wait("the package to choose", lambda: "9.9.9" in d.find_element(By.ID, "campaign-package").text)
        d.find_element(By.ID, "campaign-endpoints").send_keys(ep)
        d.find_element(By.ID, "campaign-start-button").click()
        run.wait(
            "the campaign's start",
            lambda: any(k in d.find_element(By.ID, "campaign-status").get_attribute("class").split() for k in ("ok", "error")),
        )
        started = d.find_element(By.ID, "campaign-status")
        assert "ok" in started.get_attribute("class").split(), f"campaign: {started.text!r}"
        cid = started.text.split()[-1]
        run.wait("the campaign's counts by phase", lambda: run.text(f"campaign-totals-{cid}"))
        totals = run.text(f"campaign-totals-{cid}").replace("\n", ", ")
        fw = f'#event-list li[data-kind="FIRMWARE"][data-ep="{ep}"]'
        run.wait("a FIRMWARE event of the device", lambda: d.find_elements(By.CSS_SELECTOR, fw), timeout=30)
        d.save_screenshot(os.path.join(run.artifacts, "console-firmware.png"))
        return f"campaign {cid}: {totals}"

    if firmware:
        run.step("upload a firmware package and start a campaign", firmware_campaign)

    def no_policy_violation():
        run.browser_log()
        # The 401s that made the page ask for the token are expected; nothing else is.
        bad = [
            e["message"]
            for e in run.logs
            if (e.get("level") == "SEVERE" or "Content Security Policy" in e.get("message", ""))
            and "status of 401" not in e.get("message", "")
        ]
        assert not bad, "; ".join(bad)[:500]
        return None

    run.step("no script error and no Content-Security-Policy violation", no_policy_violation)
    time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
