"""The main path in a real browser (Debian's chromium, headless, through chromium-driver): an
employee signs in and submits an expense with a receipt, HR signs in, passes MFA and decides. The
app runs in this process behind Django's threaded WSGI server on loopback (the lab is not needed);
a screenshot of each page goes to .lab/screenshots/ for a person to look at."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests.app.test_expenses import company_with_ai, receipt_pdf
from tests.app.test_security import code_for, make

SHOTS = Path(__file__).resolve().parents[2] / ".lab" / "screenshots"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def live_app(s3):
    """The app on 127.0.0.1:<free port>, plain HTTP (so cookies without Secure, no HTTPS redirect:
    the only settings changed for this test)."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.test import override_settings

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass
    with override_settings(SECURE_SSL_REDIRECT=False, SESSION_COOKIE_SECURE=False, CSRF_COOKIE_SECURE=False):
        server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet, allow_reuse_address=False)
        server.set_app(WSGIHandler())          # after the override: middleware reads settings when made
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.fail("chromium and chromium-driver are missing: scripts/bootstrap --test installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(SHOTS / f"{name}.png"))


def sign_in(driver, base: str, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    driver.delete_all_cookies()
    driver.get(f"{base}/login/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(password)
    submit_and_wait(driver)
    wait_for(driver, lambda d: not d.current_url.endswith("/login/"))


def wait_for(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, 15).until(condition)


def submit_and_wait(driver, button=None):
    """Click a form's button and wait until the next page has loaded. The old page is marked in
    its window and the wait ends when a loaded document no longer has the mark. Not selenium's
    staleness_of: while the document is replaced, chromedriver can answer its element query with
    "Node with given id does not belong to the document" (an unknown error, not a stale element),
    which ended the wait with an error once when the machine was busy."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    driver.execute_script("window.trustopsLeaving = true")
    (button or driver.find_element(By.CSS_SELECTOR, "main form button")).click()

    def next_page_loaded(d):
        try:
            return d.execute_script(
                "return window.trustopsLeaving === undefined && document.readyState === 'complete'")
        except WebDriverException:          # the document is being replaced: ask again
            return False
    wait_for(driver, next_page_loaded)


def test_employee_submits_and_hr_decides_in_a_browser(live_app, browser, tmp_path):
    from django_otp.plugins.otp_totp.models import TOTPDevice
    from selenium.webdriver.common.by import By

    from core.models import ExpenseReport
    company_with_ai("Browser GmbH", False)
    me, pw = make("Browser GmbH")
    hr, hpw = make("Browser GmbH", "hr")
    device = TOTPDevice.objects.create(user=hr.user, name="authenticator", confirmed=True)
    receipt = tmp_path / "receipt.pdf"
    receipt.write_bytes(receipt_pdf())

    browser.get(f"{live_app}/login/")
    shot(browser, "01-sign-in")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"
    css = browser.execute_script("return getComputedStyle(document.querySelector('main')).maxWidth")
    assert css != "none"                                       # the stylesheet loaded (CSP allows it)
    sign_in(browser, live_app, me.user.username, pw)
    assert browser.current_url == f"{live_app}/"
    shot(browser, "02-home")
    browser.get(f"{live_app}/expenses/")
    browser.find_element(By.ID, "amount").send_keys("45.00")
    browser.execute_script("arguments[0].value = '2026-11-01'", browser.find_element(By.ID, "spent_on"))
    browser.find_element(By.ID, "receipt").send_keys(str(receipt))
    shot(browser, "03-expense-form")
    submit_and_wait(browser)
    assert "Submitted" in browser.find_element(By.CSS_SELECTOR, "tbody").text
    shot(browser, "04-expense-submitted")
    report = ExpenseReport.objects.get(employee=me)
    assert report.status == "submitted" and report.receipt_type == "application/pdf"

    sign_in(browser, live_app, hr.user.username, hpw)
    browser.get(f"{live_app}/hr/expenses/")
    assert "/mfa/" in browser.current_url                      # staff: the second factor first
    shot(browser, "05-mfa")
    browser.find_element(By.ID, "token").send_keys(code_for(device))
    submit_and_wait(browser)
    assert browser.current_url == f"{live_app}/hr/expenses/"
    shot(browser, "06-hr-queue")
    row = browser.find_element(By.XPATH, f"//tr[td[1][normalize-space()='{me.full_name}']]")
    submit_and_wait(browser, row.find_element(By.CSS_SELECTOR, "button[value=approve]"))
    shot(browser, "07-hr-decided")
    report.refresh_from_db()
    assert report.status == "approved" and report.decided_by == hr.user
    browser.get(f"{live_app}/hr/requests/")
    shot(browser, "08-hr-requests")
    sign_in(browser, live_app, me.user.username, pw)
    browser.get(f"{live_app}/me/requests/")
    shot(browser, "09-my-privacy-requests")
    browser.get(f"{live_app}/expenses/")
    assert "Approved" in browser.find_element(By.CSS_SELECTOR, "tbody").text
