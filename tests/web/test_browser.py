"""The web browser in a real browser: Playwright drives Debian's Chromium against a real uvicorn server over the
demo project (one browser and one server for the whole session). Each test saves a screenshot of its page
(to docs/screenshots/ with AIRDUCK_SCREENSHOTS=1, the README's pictures)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

from tests.web.conftest import ADMIN_TOKEN

DASH = "\u2013"  # the pager says "rows 1-50 of N" with an en dash



def shot(page, screenshots, name: str) -> None:
    path = screenshots / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one


def test_sign_in(page, screenshots):
    page.goto("/runs")
    assert "/signin" in page.url  # not signed in: sent to the sign-in form, which comes back here
    page.fill("#token", "a-wrong-token-0000000000000000")
    page.click("button[type=submit]")
    assert page.locator(".alert.error").inner_text().startswith("that token is not valid")
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/runs")
    page.goto("/")
    assert page.locator("h2", has_text="Tables per layer").is_visible()
    assert page.locator("header.top .who").inner_text().count("admin") >= 1
    shot(page, screenshots, "home")


def test_open_a_table_and_page_the_preview(signed_in, screenshots):
    page = signed_in
    page.click("nav >> text=Catalog")
    page.click("a[href='/tables/silver.vacancies']")
    page.click(".tabs >> text=Preview")
    info = page.locator("#page-info")
    assert info.inner_text().startswith(f"rows 1{DASH}50 of")
    first_id = page.locator("table.grid-result tbody tr").first.locator("td").first.inner_text()
    page.click("text=Next →")
    page.wait_for_function("document.querySelector('#page-info').textContent.startsWith('rows 51\u2013100')")
    assert page.locator("table.grid-result tbody tr").count() == 50
    assert page.locator("table.grid-result tbody tr").first.locator("td").first.inner_text() != first_id
    assert "tab=preview" in page.url  # the page did not reload: htmx swapped the grid in
    page.click("text=← Previous")
    page.wait_for_function("document.querySelector('#page-info').textContent.startsWith('rows 1\u201350')")
    shot(page, screenshots, "table")
    # the profile and the history (a diff between two snapshots) load in the page too
    page.click(".tabs >> text=Profile")
    page.select_option("#column", "city")
    page.wait_for_selector("#profile h3:has-text('city')")
    page.click(".tabs >> text=History")
    page.click("text=Show the diff")
    page.wait_for_selector("#diff .stat")
    assert "inserted" in page.locator("#diff").inner_text()
    page.click(".tabs >> text=Quality")
    page.wait_for_selector("#quality-chart .uplot")
    shot(page, screenshots, "table-quality")


def test_run_a_query_and_download_it(signed_in, screenshots, tmp_path):
    page = signed_in
    page.goto("/sql")
    page.fill("#sql", "SELECT city, count(*) AS vacancies FROM silver.vacancies GROUP BY city ORDER BY 2 DESC")
    page.press("#sql", "Control+Enter")
    page.wait_for_selector("#sql-info")
    assert page.locator("#result th").all_inner_texts() == ["city", "vacancies"]
    cities = page.locator("#result tbody tr").count()
    assert cities > 3
    shot(page, screenshots, "sql")
    with page.expect_download() as dl:
        page.click("text=Download CSV")
    lines = Path(dl.value.path()).read_text(encoding="utf-8").strip().splitlines()
    assert lines[0] == "city,vacancies" and len(lines) == cities + 1
    with page.expect_download() as dl:
        page.click("text=Download Parquet")
    assert pq.read_table(dl.value.path()).num_rows == cities
    # a refused statement is explained in the page
    page.fill("#sql", "DROP TABLE silver.vacancies")
    page.click("#sql-form button.primary")
    page.wait_for_selector("#result .alert.error")
    assert page.locator("#result .alert.error").inner_text().strip()


def test_lineage_graph_click_through_to_a_table(signed_in, screenshots):
    page = signed_in
    page.goto("/lineage")
    page.wait_for_selector("#graph[data-ready]")
    assert int(page.get_attribute("#graph", "data-ready")) >= 10
    # sources are drawn left of bronze, bronze left of silver, silver left of gold (laid out by layer)
    xs = page.evaluate("""() => { const cy = document.getElementById('graph')._cy; const x = {};
        cy.nodes().forEach(n => { const l = n.data('layer'); x[l] = Math.min(x[l] ?? 1e9, n.position('x')); });
        return x; }""")
    assert xs["source"] < xs["bronze"] < xs["silver"] < xs["gold"] < xs["serve"]
    shot(page, screenshots, "lineage")
    box = page.locator("#graph").bounding_box()
    pos = page.evaluate("() => document.getElementById('graph')._cy.$id('silver.companies').renderedPosition()")
    page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
    page.wait_for_url("**/tables/silver.companies")
    assert page.locator("h1").inner_text() == "silver.companies"


def test_open_a_run(signed_in, screenshots):
    page = signed_in
    page.click("nav >> text=Runs")
    page.locator("table.data tbody tr a").last.click()
    page.wait_for_url(re.compile(r".*/runs/\d{8}T"))
    assert page.locator(".timeline .tl-row").count() >= 8
    assert page.locator("table.steps >> text=ingest:vacancies").is_visible()
    assert page.locator("h2", has_text="Quality results").is_visible()
    shot(page, screenshots, "run")


def test_start_a_run_and_see_it_finish(signed_in, screenshots):
    page = signed_in
    page.goto("/runs")
    page.fill("input[name=select]", "silver.companies")
    page.click("#start-run")
    page.wait_for_url(re.compile(r".*/runs/\d{8}T\d{6}Z-\w+$"), timeout=60_000)
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_function(
        "!['running', 'starting'].includes(document.querySelector('#run-status').textContent.trim())", timeout=400_000)
    assert page.locator("#run-status").inner_text() in ("ok", "warned")
    assert page.locator("table.steps >> text=silver:companies").is_visible()
    page.goto("/runs")
    assert page.locator(f"a[href='/runs/{run_id}']").is_visible()
    shot(page, screenshots, "runs")


def test_upload_download_and_delete_an_object(signed_in, screenshots, tmp_path, live_server):
    page = signed_in
    # an object put through the REST API (as a script would) shows up as a folder to browse
    req = urllib.request.Request(f"{live_server}/api/v1/objects/reports/2026/q4.csv", data=b"quarter,revenue\n4,10\n",
                                 method="PUT", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as answer:
        assert answer.status == 201
    page.goto("/objects")
    page.click("a:has-text('reports/')")
    page.click("a:has-text('2026/')")
    assert page.locator("tr", has_text="q4.csv").count() == 1
    page.click(".crumbs >> text=root")
    src = tmp_path / "contract.pdf"
    src.write_bytes(b"%PDF-1.4 airduck test " + bytes(range(256)) * 50)
    (tmp_path / "notes.txt").write_text("meeting notes\n")
    for f in (src, tmp_path / "notes.txt"):
        page.set_input_files("#file", str(f))
        page.click("form button:has-text('Upload')")
        page.wait_for_selector(f".alert.ok:has-text('Uploaded {f.name}')")
    row = page.locator("tr", has_text="contract.pdf")
    with page.expect_download() as dl:
        row.locator("text=Download").click()
    assert Path(dl.value.path()).read_bytes() == src.read_bytes()
    shot(page, screenshots, "objects")
    page.once("dialog", lambda d: d.accept())
    page.locator("tr", has_text="notes.txt").locator("button.danger").click()
    page.wait_for_selector(".alert.ok:has-text('Deleted notes.txt')")
    assert page.locator("tr", has_text="notes.txt").count() == 0
    page.once("dialog", lambda d: d.dismiss())  # a dismissed confirmation deletes nothing
    page.locator("tr", has_text="contract.pdf").locator("button.danger").click()
    assert page.locator("tr", has_text="contract.pdf").count() == 1


def test_pick_a_branch_in_the_menu_and_every_page_reads_it(signed_in, screenshots, demo_branch):
    page = signed_in
    b = demo_branch
    page.goto("/tables/silver.vacancies?tab=preview")
    main_total = int(page.locator("#page-info").inner_text().rsplit(" of ", 1)[1].replace(",", ""))
    assert page.locator("#branch-banner").count() == 0
    page.select_option("#branch-select", b.name)
    page.wait_for_url(f"**/tables/silver.vacancies?tab=preview&branch={b.name}")
    branch_total = main_total - b.deleted
    assert page.locator("#page-info").inner_text().endswith(f" of {branch_total:,}")
    assert page.locator("#branch-banner").is_visible() and b.name in page.locator("#branch-banner").inner_text()
    assert page.locator("#branch-select").input_value() == b.name
    # the preview's pages (htmx) read the branch too: no row of the deleted city
    cities = page.locator("table.grid-result tbody tr td:nth-child(5)").all_inner_texts()
    assert cities and b.city not in cities
    page.click("text=Next →")
    page.wait_for_function("document.querySelector('#page-info').textContent.startsWith('rows 51\u2013100')")
    assert b.city not in page.locator("table.grid-result tbody tr td:nth-child(5)").all_inner_texts()
    page.click("text=← Previous")
    page.wait_for_function("document.querySelector('#page-info').textContent.startsWith('rows 1\u201350')")
    shot(page, screenshots, "branch")
    # the profile tab (an htmx form on the page's branch) profiles the branch's rows
    page.click(".tabs >> text=Profile")
    assert "branch=" + b.name in page.url
    page.select_option("#column", "city")
    page.wait_for_selector("#profile h3:has-text('city')")
    assert b.city not in page.locator("#profile table").inner_text().split()
    # the nav keeps the branch; the SQL page queries it
    page.click("header.top nav >> text=SQL")
    page.wait_for_url(f"**/sql?branch={b.name}")
    page.fill("#sql", "SELECT count(*) AS n FROM silver.vacancies")
    page.press("#sql", "Control+Enter")
    page.wait_for_selector("#sql-info")
    assert page.locator("#result tbody td").inner_text() == f"{branch_total:,}"
    # back and forward: the URL is the view
    page.go_back()
    page.wait_for_url(f"**/tables/silver.vacancies?tab=profile&branch={b.name}")
    assert page.locator(".stat .n").first.inner_text() == f"{branch_total:,}"  # the branch's rows again
    page.go_forward()
    page.wait_for_url(f"**/sql?branch={b.name}")
    # a table clicked in the lineage graph opens on the branch
    page.goto(f"/lineage?branch={b.name}")
    page.wait_for_selector("#graph[data-ready]")
    box = page.locator("#graph").bounding_box()
    pos = page.evaluate("() => document.getElementById('graph')._cy.$id('silver.vacancies').renderedPosition()")
    page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
    page.wait_for_url(f"**/tables/silver.vacancies?branch={b.name}")
    # the branches page diffs it against main
    page.click("#branch-banner >> text=Changes vs main")
    page.wait_for_url(f"**/branches/{b.name}?branch={b.name}")
    assert page.locator("#branch-banner").is_visible()
    assert f"\u2212{b.deleted:,}" in page.locator("#diff-tables tr", has_text="silver.vacancies").inner_text()
    shot(page, screenshots, "branch-diff")
    # back on main: everything as before
    page.goto(f"/tables/silver.vacancies?tab=preview&branch={b.name}")
    page.select_option("#branch-select", "main")
    page.wait_for_url("**/tables/silver.vacancies?tab=preview")
    assert page.locator("#page-info").inner_text().endswith(f" of {main_total:,}")
    assert page.locator("#branch-banner").count() == 0
    # a link to a branch that does not exist: the error page, no traceback
    page.goto("/catalog?branch=nope")
    assert page.locator(".alert.error").inner_text().startswith("there is no branch 'nope'")
