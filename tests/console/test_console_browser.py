"""The console in a real browser: `memtrace serve` as a process, Debian's Chromium headless
driven by the official `playwright` package (never a browser Playwright downloads)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ROOT, LiveServer, memtrace_cli, new_cli_key

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / ".cache" / "screenshots"
README_CLIP = {"x": 0, "y": 0, "width": 1280, "height": 500}  # the README's pictures
V1 = "/api/v1"

HOSTILE_SCRIPT = "<script>window.__pwned = 'script'; alert('script')</script> hostile script"
HOSTILE_IMG = "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\"> hostile image"
HOSTILE_META = {
    "homepage": "javascript:window.__pwned='link';alert('link')",
    "note": "<img src=x onerror=alert('meta')>",
}


@dataclass
class Site:
    """A live server with two orgs' data and keys of each permission."""

    server: LiveServer
    admin_key: str  # org A, read+write+admin
    org_a: str
    org_b: str
    key_b: str
    read_key: str = ""
    write_key: str = ""
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + V1, headers={"x-api-key": key or self.admin_key}, timeout=10
        )

    def new_key(self, org: str, permissions: str, name: str) -> tuple[int, str]:
        """A key made through the CLI, and its id."""
        out = memtrace_cli(
            "key", "create", "--org", org, "--name", name, "--permissions", permissions,
            data_dir=self.server.data_dir,
        ).stdout  # fmt: skip
        key = out.strip().splitlines()[-1]
        listing = memtrace_cli("key", "list", "--org", org, data_dir=self.server.data_dir).stdout
        key_id = next(int(line.split()[0]) for line in listing.splitlines() if f" {name} " in line)
        return key_id, key


def _seed(site: Site) -> None:
    with site.api() as a:
        assert a.post("/agents", json={"name": "billing_agent"}).status_code == 201
        session = a.post(
            "/sessions", json={"agent_id": "support_agent", "metadata": HOSTILE_META}
        ).json()
        site.ids["session"] = session["id"]
        memories = [
            {"content": "User prefers dark mode", "tags": ["ui"], "importance": 0.7},
            {"content": "Offered the annual plan", "memory_type": "decision",
             "event_type": "decision"},
            {"content": HOSTILE_SCRIPT, "metadata": HOSTILE_META, "tags": ["hostile"]},
            {"content": HOSTILE_IMG, "tags": ["hostile"]},
            {"content": "Dark mode toggle lives in settings", "tags": ["ui"]},
        ]  # fmt: skip
        for body in memories:
            r = a.post(
                "/memories",
                json={"agent_id": "support_agent", "session_id": session["id"], **body},
            )
            assert r.status_code == 201, r.text
            site.ids.setdefault(body["content"], r.json()["id"])
        for n in range(3):
            r = a.post(
                "/memories",
                json={"agent_id": "billing_agent", "content": f"Invoice {n} was paid twice",
                      "tags": ["billing"]},
            )  # fmt: skip
            assert r.status_code == 201, r.text
    with site.api(site.key_b) as b:
        r = b.post("/memories", json={"agent_id": "b_agent", "content": "Org B private note"})
        site.ids["org_b_memory"] = r.json()["id"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = LiveServer(tmp_path_factory.mktemp("console") / "data").start()
    try:
        org_a, admin_key = new_cli_key(server.data_dir)
        org_b, key_b = new_cli_key(server.data_dir, "read,write")
        site = Site(server, admin_key, org_a, org_b, key_b)
        site.read_key = site.new_key(org_a, "read", "reader")[1]
        site.write_key = site.new_key(org_a, "read,write", "writer")[1]
        _seed(site)
        yield site
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module scope: the sync API runs an event loop in this thread until it stops, and the
    # async tests that follow need the thread without one.
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's Chromium is missing: run scripts/ensure-chromium.sh"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Tab:
    """A page in its own browser context, with every dialog it tried to open."""

    page: Any
    site: Site
    dialogs: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.site.url + path)

    def sign_in(self, key: str) -> None:
        from playwright.sync_api import expect

        self.goto("/ui/")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    def csrf(self) -> str:
        value = self.page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert value
        return str(value)

    def pwned(self) -> Any:
        return self.page.evaluate("() => window.__pwned")


@pytest.fixture
def tab(browser: Any, site: Site, request: pytest.FixtureRequest) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    tab = Tab(page, site)

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield tab
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        context.close()


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def test_sign_in_refuses_a_wrong_key_then_opens_the_overview(tab: Tab) -> None:
    page = tab.page
    tab.goto("/")  # GET / redirects to the console, which asks to sign in
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    page.get_by_label("API key").fill("mtk_" + "x" * 43 + "=")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert [c["name"] for c in page.context.cookies()] == ["memtrace_console_login"]  # no session
    page.get_by_label("API key").fill(tab.site.admin_key)
    page.get_by_role("button", name="Sign in").click()
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Overview", "Memories", "Agents", "Sessions", "Keys"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_test_id("total-memories")).to_have_text("8")
    expect(page.get_by_test_id("total-agents")).to_have_text("2")
    expect(page.get_by_test_id("memories-24h")).to_have_text("8")
    expect(page.locator("svg rect.bar")).to_have_count(30)
    expect(page.get_by_role("link", name="support_agent")).to_be_visible()
    assert tab.dialogs == [] and tab.pwned() is None
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), clip=README_CLIP)


def test_memories_filters_and_search_with_the_score_breakdown(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(tab.site.admin_key)
    page.get_by_role("link", name="Memories", exact=True).click()
    page.get_by_label("Agent", exact=True).fill("billing_agent")
    page.get_by_role("button", name="Apply").click()
    rows = page.locator("table.memories tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("paid twice")
    page.get_by_label("Agent", exact=True).fill("")
    page.get_by_label("Memory type").select_option("decision")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Offered the annual plan")
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Tags").fill("ui")
    page.get_by_label("Search").fill("dark mode")
    page.get_by_label("Recency half-life").fill("7d")
    page.get_by_label("Importance weight").fill("1")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(2)
    first = page.get_by_test_id("score-breakdown").first
    for word in ("text (BM25)", "recency", "importance", "final score"):
        expect(first).to_contain_text(word)
    expect(rows.first).to_contain_text("User prefers dark mode")  # importance 0.7 ranks it first
    with tab.site.api() as api:
        body = {"query": "dark mode", "tags": ["ui"], "recency_half_life": "7d",
                "importance_weight": 1, "explain": True}  # fmt: skip
        top = api.post("/search", json=body).json()["results"][0]["explanation"]
    expect(first).to_contain_text(f"{top['importance_factor']:.4g}")
    page.screenshot(path=str(SCREENSHOTS / "memories-search.png"), clip=README_CLIP)
    # a bad filter is a clear 400 page, not a crash
    tab.goto("/ui/memories?since=yesterday-ish")
    expect(page.get_by_role("alert")).to_contain_text("invalid since")


def test_memory_detail_and_delete_with_confirmation(tab: Tab) -> None:
    page = tab.page
    with tab.site.api() as api:
        doomed = api.post(
            "/memories",
            json={"agent_id": "support_agent", "session_id": tab.site.ids["session"],
                  "content": "Temporary note to delete", "metadata": {"ticket": 42},
                  "tags": ["tmp"], "importance": 0.25, "ttl": "7d"},
        ).json()  # fmt: skip
    tab.sign_in(tab.site.write_key)
    tab.goto("/ui/memories?tags=tmp")
    page.get_by_role("link", name="Temporary note to delete").click()
    expect(page).to_have_url(re.compile(doomed["id"]))
    fields = page.locator("dl.fields")
    for text in (doomed["id"], "support_agent", tab.site.ids["session"], "0.25", "tmp"):
        expect(fields).to_contain_text(text)
    expect(page.get_by_test_id("metadata")).to_have_text('{\n  "ticket": 42\n}')
    stamp = page.locator("dl.fields time").first
    expect(stamp).to_have_attribute("title", re.compile(r"Z \(UTC\)$"))
    expect(page.get_by_role("heading", name="In its session")).to_be_visible()
    expect(page.locator("ol.timeline li")).to_have_count(4)  # 3 before it, itself
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete this memory?")).to_be_visible()
    page.get_by_role("button", name="Delete permanently").click()
    expect(page.get_by_role("status")).to_contain_text(f"{doomed['id']} was deleted")
    with tab.site.api() as api:
        assert api.get(f"/memories/{doomed['id']}").status_code == 404


def test_bulk_erase_counts_first_then_erases_on_confirmation(tab: Tab) -> None:
    page = tab.page
    with tab.site.api() as api:
        batch = [{"agent_id": "cleanup_agent", "content": f"Scratch {n}", "tags": ["scratch"]}
                 for n in range(3)]  # fmt: skip
        assert api.post("/memories", json={"memories": batch}).json()["count"] == 3
    tab.sign_in(tab.site.write_key)
    tab.goto("/ui/memories")
    page.get_by_role("link", name="Bulk erase…").click()
    page.get_by_label("Tags").fill("scratch")
    page.get_by_role("button", name="Count matching memories").click()
    expect(page.get_by_test_id("dry-run-count")).to_have_text("3")
    with tab.site.api() as api:  # the count changed nothing
        assert api.get("/memories", params={"tags": "scratch"}).json()["count"] == 3
    page.get_by_role("button", name="Erase 3 memories").click()
    expect(page.get_by_test_id("erased")).to_have_text("Erased 3 memories.")
    with tab.site.api() as api:
        assert api.get("/memories", params={"tags": "scratch"}).json()["count"] == 0


def test_context_preview_is_exactly_the_apis_markdown(tab: Tab) -> None:
    page = tab.page
    session = tab.site.ids["session"]
    tab.sign_in(tab.site.admin_key)
    tab.goto(f"/ui/sessions/{session}")
    page.get_by_label("Max tokens").fill("40")
    page.get_by_role("button", name="Preview").click()
    with tab.site.api() as api:
        expected = api.post(f"/sessions/{session}/context", json={"max_tokens": 40}).json()
        agent = api.post("/agents/billing_agent/context", json={"query": "invoice"}).json()
    assert page.get_by_test_id("context").text_content() == expected["context"]
    expect(page.get_by_test_id("memory-count")).to_have_text(str(expected["memory_count"]))
    estimate = -(-len(expected["context"]) // 4)
    expect(page.get_by_test_id("token-estimate")).to_have_text(str(estimate))
    tab.goto("/ui/agents/billing_agent")
    page.get_by_label("Query").fill("invoice")
    page.get_by_role("button", name="Preview").click()
    assert page.get_by_test_id("context").text_content() == agent["context"]


def test_agents_and_sessions_screens(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(tab.site.admin_key)
    page.get_by_role("link", name="Agents", exact=True).click()
    expect(page.get_by_role("link", name="support_agent")).to_be_visible()
    expect(page.get_by_role("link", name="billing_agent")).to_be_visible()
    page.get_by_role("link", name="billing_agent").click()
    expect(page.get_by_role("heading", name="Agent billing_agent")).to_be_visible()
    expect(page.locator("svg rect.bar")).to_have_count(30)
    expect(page.get_by_role("heading", name="Newest memories")).to_be_visible()
    expect(page.locator("table tbody tr")).to_have_count(3)
    page.get_by_role("link", name="Sessions", exact=True).click()
    page.get_by_label("Agent").fill("support_agent")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name=tab.site.ids["session"]).click()
    timeline = page.locator("ol.timeline li")
    expect(timeline.first).to_contain_text("User prefers dark mode")  # oldest first
    expect(timeline.nth(1)).to_contain_text("Offered the annual plan")


def test_read_only_key_sees_no_changes_and_a_forged_post_is_403(tab: Tab) -> None:
    page = tab.page
    memory_id = tab.site.ids["User prefers dark mode"]
    tab.sign_in(tab.site.read_key)
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Keys")).to_have_count(0)
    tab.goto(f"/ui/memories/{memory_id}")
    expect(page.get_by_test_id("memory-content")).to_have_text("User prefers dark mode")
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    csrf = tab.csrf()
    forged = page.request.post(
        f"{tab.site.url}/ui/memories/{memory_id}/delete", form={"csrf_token": csrf}
    )
    assert forged.status == 403
    erase = page.request.post(
        f"{tab.site.url}/ui/erase", form={"csrf_token": csrf, "agent_id": "support_agent",
                                          "confirm": "yes"}
    )  # fmt: skip
    assert erase.status == 403
    assert page.request.get(f"{tab.site.url}/ui/keys").status == 403
    with tab.site.api() as api:
        assert api.get(f"/memories/{memory_id}").status_code == 200


def test_hostile_content_stays_inert_and_literal(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(tab.site.admin_key)
    tab.goto("/ui/memories?tags=hostile")
    expect(page.get_by_text("<script>window.__pwned")).to_be_visible()
    expect(page.get_by_text('<img src=x onerror="window.__pwned')).to_be_visible()
    tab.goto(f"/ui/memories/{tab.site.ids[HOSTILE_SCRIPT]}")
    expect(page.get_by_test_id("memory-content")).to_have_text(HOSTILE_SCRIPT)
    expect(page.get_by_test_id("metadata")).to_contain_text("javascript:window.__pwned")
    tab.goto(f"/ui/sessions/{tab.site.ids['session']}")
    expect(page.get_by_test_id("session-metadata")).to_contain_text("<img src=x onerror=")
    for path in ("/ui/", "/ui/memories", "/ui/agents/support_agent", "/ui/sessions"):
        tab.goto(path)
        assert page.locator("a[href^='javascript:' i]").count() == 0
        assert page.locator("img").count() == 0
    assert tab.dialogs == []
    assert tab.pwned() is None


def test_another_orgs_ids_are_404(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(tab.site.key_b)
    expect(page.get_by_test_id("total-memories")).to_have_text("1")
    for path in (
        f"/ui/memories/{tab.site.ids['User prefers dark mode']}",
        f"/ui/memories/{tab.site.ids['User prefers dark mode']}/delete",
        f"/ui/sessions/{tab.site.ids['session']}",
        "/ui/agents/support_agent",
    ):
        response = tab.goto(path)
        assert response.status == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    forged = page.request.post(
        f"{tab.site.url}/ui/memories/{tab.site.ids['User prefers dark mode']}/delete",
        form={"csrf_token": tab.csrf()},
    )
    assert forged.status == 404
    tab.goto("/ui/memories")
    expect(page.get_by_text("Org B private note")).to_be_visible()
    expect(page.get_by_text("User prefers dark mode")).to_have_count(0)
    with tab.site.api() as api:
        assert api.get(f"/memories/{tab.site.ids['User prefers dark mode']}").status_code == 200


def test_sign_out_ends_the_session(tab: Tab, browser: Any) -> None:
    page = tab.page
    tab.sign_in(tab.site.admin_key)
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "memtrace_console"]
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    tab.goto("/ui/memories")
    expect(page).to_have_url(re.compile(r"/ui/sign-in"))
    replay = browser.new_context()  # the old cookie, replayed, opens nothing
    try:
        replay.add_cookies([cookie])
        other = replay.new_page()
        other.goto(tab.site.url + "/ui/memories")
        expect(other).to_have_url(re.compile(r"/ui/sign-in"))
    finally:
        replay.close()


def test_a_key_revoked_through_the_cli_is_signed_out(tab: Tab) -> None:
    page = tab.page
    key_id, key = tab.site.new_key(tab.site.org_a, "read", "short-lived")
    tab.sign_in(key)
    memtrace_cli("key", "revoke", str(key_id), data_dir=tab.site.server.data_dir)
    deadline = time.monotonic() + 5  # auth.key_cache_seconds is 1 s
    while "/ui/sign-in" not in page.url:
        assert time.monotonic() < deadline, "still signed in after the key was revoked"
        tab.goto("/ui/memories")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_keys_screen_creates_revokes_sets_retention_and_exports(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(tab.site.admin_key)
    page.get_by_role("link", name="Keys", exact=True).click()
    expect(page.get_by_role("cell", name="reader", exact=True)).to_be_visible()
    page.get_by_label("Name").fill("ci-from-console")
    page.get_by_role("checkbox", name="write").uncheck()
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_test_id("new-key").text_content()
    assert new_key and new_key.startswith("mtk_")
    with httpx.Client(base_url=tab.site.url + V1, headers={"x-api-key": new_key}) as api:
        assert api.get("/agents").status_code == 200
        assert api.post("/memories", json={"agent_id": "x", "content": "y"}).status_code == 403
    tab.goto("/ui/keys")  # shown once: not on the next visit
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    page.get_by_role("button", name="Revoke key ci-from-console").click()
    expect(page.get_by_role("cell", name="ci-from-console")).to_have_count(0)
    page.get_by_label("Keep memories for").fill("3650")
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_test_id("retention")).to_have_text("3650")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download export (JSONL)").click()
    lines = Path(download.value.path()).read_text().splitlines()
    kinds = {json.loads(line)["kind"] for line in lines}
    assert kinds == {"agent", "session", "memory"}
    assert all("Org B" not in line for line in lines)
    deadline = time.monotonic() + 5
    with httpx.Client(base_url=tab.site.url + V1, headers={"x-api-key": new_key}) as api:
        while api.get("/agents").status_code != 401:
            assert time.monotonic() < deadline, "revoked key still accepted"


def test_csrf_token_missing_or_wrong_is_403(tab: Tab) -> None:
    page = tab.page
    tab.sign_in(tab.site.admin_key)
    url = tab.site.url
    assert page.request.post(url + "/ui/erase", form={"agent_id": "support_agent"}).status == 403
    wrong = {"agent_id": "support_agent", "csrf_token": "not-the-token", "confirm": "yes"}
    assert page.request.post(url + "/ui/erase", form=wrong).status == 403
    assert page.request.post(url + "/ui/sign-out", form={}).status == 403
    assert (
        page.request.post(url + "/ui/keys", form={"name": "sneaky", "perm_read": "1"}).status == 403
    )
    with tab.site.api() as api:
        assert api.get("/memories", params={"agent_id": "support_agent"}).json()["count"] >= 5


def test_security_headers_and_cookie_flags(tab: Tab) -> None:
    page = tab.page
    response = tab.goto("/ui/sign-in")
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    tab.sign_in(tab.site.admin_key)
    (cookie,) = page.context.cookies()  # the sign-in form's token cookie is gone
    assert cookie["name"] == "memtrace_console"
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # plain http on loopback; https sets it (tests/test_console.py)
    assert cookie["value"] != tab.site.admin_key and tab.site.admin_key not in cookie["value"]
    for path in ("/ui/", "/ui/memories", "/ui/static/console.css", "/ui/nowhere"):
        assert "frame-ancestors 'none'" in tab.goto(path).headers["content-security-policy"]


def test_phone_width_and_keyboard(tab: Tab) -> None:
    page = tab.page
    page.set_viewport_size({"width": 390, "height": 844})
    tab.sign_in(tab.site.admin_key)
    for path in ("/ui/", "/ui/memories?q=dark+mode", f"/ui/sessions/{tab.site.ids['session']}"):
        tab.goto(path)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, path
    tab.goto("/ui/")
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(2):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Overview", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/memories$"))
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
               .filter(el => !el.labels || el.labels.length === 0).length"""
    )
    assert unlabeled == 0


def test_reading_works_with_javascript_off(browser: Any, site: Site) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(site.url + "/ui/")
        page.get_by_label("API key").fill(site.read_key)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("total-memories")).to_be_visible()
        page.get_by_role("link", name="Memories", exact=True).click()
        page.get_by_label("Search").fill("dark mode")
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_test_id("score-breakdown").first).to_contain_text("recency")
        stamp = page.locator("table.memories time").first  # UTC, as the server wrote it
        expect(stamp).to_have_text(re.compile(r"^\d{4}-\d\d-\d\dT.*Z$"))
        page.screenshot(path=str(SCREENSHOTS / "javascript_off.png"), full_page=True)
    finally:
        context.close()
