"""The browser's pages through TestClient over the demo project: each renders what the facade holds, needs a
sign-in, enforces CSRF on its forms and the role on writes, shows errors in the page, and has empty states."""

from __future__ import annotations

import csv
import io
import re

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import ADMIN_TOKEN, READER_TOKEN, make_app, sign_in

DASH = "\u2013"  # the pager says "rows 1-50 of N" with an en dash
MINUS = "\u2212"  # diffs count deleted rows with a minus sign

PAGES = ["/", "/catalog", "/tables/silver.vacancies", "/tables/silver.vacancies?tab=preview",
         "/tables/silver.vacancies/preview?offset=50", "/tables/silver.vacancies?tab=profile",
         "/tables/silver.vacancies/profile?column=city", "/tables/silver.vacancies?tab=history",
         "/tables/silver.vacancies/diff?start=1", "/tables/silver.vacancies?tab=quality",
         "/tables/silver.vacancies?tab=lineage", "/tables/silver.vacancies?tab=files", "/sql", "/runs", "/lineage",
         "/lineage.json", "/quarantine", "/objects", "/objects/download?key=a.txt", "/branches", "/branches/x",
         "/tables/silver.vacancies?branch=x"]
FORMS = [("/sql", {"sql": "SELECT 1"}), ("/sql/download", {"sql": "SELECT 1", "format": "csv"}),
         ("/runs", {"select": "silver.companies"}), ("/signout", {})]


@pytest.fixture(scope="module")
def anonymous(demo_app):
    with TestClient(demo_app) as c:
        yield c


@pytest.fixture(scope="module")
def admin(demo_app):
    with TestClient(demo_app) as c:
        c.headers["x-test"] = "admin"
        csrf = sign_in(c, ADMIN_TOKEN)
        yield c, csrf


@pytest.fixture(scope="module")
def reader(demo_app):
    with TestClient(demo_app) as c:
        csrf = sign_in(c, READER_TOKEN)
        yield c, csrf


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_sign_in(anonymous, path):
    r = anonymous.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")
    assert anonymous.get(path, headers={"HX-Request": "true"}).headers.get("hx-redirect", "").startswith("/signin")


@pytest.mark.parametrize("path,data", FORMS)
def test_forms_need_a_sign_in(anonymous, path, data):
    r = anonymous.post(path, data=data, follow_redirects=False)
    assert r.status_code == 401 and "Sign in" in r.text


def test_sign_in_with_a_wrong_token_says_so_and_sets_no_cookie(anonymous):
    r = anonymous.post("/signin", data={"token": "not-the-token-at-all-000000", "next": "/"}, follow_redirects=False)
    assert r.status_code == 401 and "that token is not valid" in r.text
    assert "airduck_session" not in r.headers.get("set-cookie", "")
    assert "not-the-token-at-all" not in r.text


def test_sign_in_redirects_only_within_the_site(demo_app):
    with TestClient(demo_app) as c:
        for target, expected in (("//evil.example/x", "/"), ("https://evil.example/", "/"), ("/runs", "/runs")):
            r = c.post("/signin", data={"token": ADMIN_TOKEN, "next": target}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == expected
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert ADMIN_TOKEN not in r.headers["set-cookie"]


def test_home_shows_the_project_the_lake_the_layers_and_the_last_run(admin, demo_root):
    c, _ = admin
    text = _text(c.get("/").text)
    assert "demo" in text and ".airduck/catalog.sqlite" in text
    for layer, table in (("bronze", "vacancies"), ("silver", "vacancies__quarantine"), ("gold", "top_growing_skills")):
        assert layer in text and table in text
    run = c.app.state.lakehouse.runs(1)[0]
    assert run.run_id in text and run.status in text


def test_catalog_lists_schemas_and_tables_with_counts(admin):
    c, _ = admin
    lh = c.app.state.lakehouse
    html = c.get("/catalog").text
    d = lh.describe("silver.vacancies")
    row = re.search(r'href="/tables/silver.vacancies">silver.vacancies</a></td><td class="num">([\d,]+)<', html)
    assert row and int(row.group(1).replace(",", "")) == d.row_count


def test_table_tabs(admin):
    c, _ = admin
    lh = c.app.state.lakehouse
    cols = _text(c.get("/tables/silver.vacancies").text)
    assert all(col.name in cols for col in lh.describe("silver.vacancies").columns)
    # the preview pages through the rows in the table's order
    first = c.get("/tables/silver.vacancies?tab=preview").text
    second = c.get("/tables/silver.vacancies/preview?offset=50", headers={"HX-Request": "true"}).text
    assert f"rows 1{DASH}50 of" in first and f"rows 51{DASH}100 of" in second and "<html" not in second
    page = lh.rows("silver.vacancies", limit=50, offset=50)
    assert str(page.rows[0][0]) in second and str(page.rows[0][0]) not in _text(first)
    # the profile of a column
    p = lh.profile("silver.vacancies", "city")
    prof = _text(c.get("/tables/silver.vacancies/profile?column=city").text)
    assert f"distinct {p['distinct']:,}" in prof and str(p["top"][0]["value"]) in prof
    # history lists the snapshots that changed it; the diff of two counts the change feed
    snaps = lh.snapshots("silver.vacancies")
    hist = c.get("/tables/silver.vacancies?tab=history").text
    assert all(f'value="{s.snapshot_id}"' in hist for s in snaps)
    d = lh.table_changes("silver.vacancies", 0, snaps[-1].snapshot_id)
    diff = _text(c.get(f"/tables/silver.vacancies/diff?start=0&end={snaps[-1].snapshot_id}").text)
    assert f"+{d['inserted']:,} inserted" in diff and d["inserted"] > 0
    # the preview at a snapshot reads the table as it was then
    first_snap = snaps[0].snapshot_id
    then = c.get(f"/tables/silver.vacancies?tab=preview&at={first_snap}").text
    rows_then = lh.rows("silver.vacancies", limit=50, at=first_snap).rows
    assert f"at snapshot {first_snap}" in then and str(rows_then[0][0]) in then
    # quality over runs: the chart's data holds every check of the table's last run
    qual = c.get("/tables/silver.vacancies?tab=quality").text
    data = re.search(r'<script id="quality-data" type="application/json">(.*?)</script>', qual, re.S)
    assert data and "expectation:salary_sane" in data.group(1)
    # files: the table's data files
    files = c.get("/tables/silver.vacancies?tab=files").text
    assert all(f["data_file"] in files for f in lh.table_files("silver.vacancies"))


def test_a_snapshot_that_is_not_ascii_digits_is_a_404_page(admin):
    c, _ = admin
    r = c.get("/tables/silver.vacancies/diff?start=\u00b2&end=1")  # '²'.isdigit(), but int('²') fails
    assert r.status_code == 404 and "neither a snapshot id nor a tag" in r.text and "Traceback" not in r.text


def test_a_table_that_does_not_exist_is_a_404_page_with_the_hint(admin):
    c, _ = admin
    r = c.get("/tables/silver.nope")
    assert r.status_code == 404 and 'class="alert error"' in r.text and "Traceback" not in r.text


def test_lineage_json_is_the_plan_left_to_right(admin):
    c, _ = admin
    g = c.get("/lineage.json").json()
    ids = {n["id"]: n for n in g["nodes"]}
    assert ids["bronze.vacancies"]["layer"] == "bronze" and ids["silver.vacancies"]["table"] == "silver.vacancies"
    assert any(n["layer"] == "source" for n in g["nodes"]) and any(n["layer"] == "serve" for n in g["nodes"])
    assert {"source": "bronze.vacancies", "target": "silver.vacancies"}.items() <= next(
        e for e in g["edges"] if e["target"] == "silver.vacancies" and e["source"] == "bronze.vacancies").items()
    near = c.get("/lineage.json?focus=silver.companies").json()
    names = {n["id"] for n in near["nodes"]}
    assert "bronze.companies" in names and "bronze.vacancies" not in names
    assert [n["id"] for n in near["nodes"] if n.get("focus")] == ["silver.companies"]


def test_sql_runs_a_query_and_explains_a_refused_one(admin):
    c, csrf = admin
    lh = c.app.state.lakehouse
    r = c.post("/sql", data={"sql": "SELECT city, count(*) AS n FROM silver.vacancies GROUP BY 1 ORDER BY 2 DESC",
                             "csrf_token": csrf}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<th>city</th>" in r.text
    before = lh.describe("silver.vacancies").row_count
    for bad in ("DELETE FROM silver.vacancies", "SELECT * FROM read_csv('/etc/passwd')", "COPY silver.vacancies TO 'x.csv'"):
        r = c.post("/sql", data={"sql": bad, "csrf_token": csrf}, headers={"HX-Request": "true"})
        assert r.status_code == 400 and 'class="alert error"' in r.text, r.text
    assert lh.describe("silver.vacancies").row_count == before


def test_sql_downloads_csv_and_parquet(admin):
    c, csrf = admin
    query = "SELECT vacancy_id, city FROM silver.vacancies ORDER BY vacancy_id"
    n = c.app.state.lakehouse.describe("silver.vacancies").row_count
    r = c.post("/sql/download", data={"sql": query, "format": "csv", "csrf_token": csrf})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["vacancy_id", "city"] and len(rows) == n + 1
    r = c.post("/sql/download", data={"sql": query, "format": "parquet", "csrf_token": csrf})
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == n and table.column_names == ["vacancy_id", "city"]


@pytest.mark.parametrize("path,data", [*FORMS, ("/objects/delete", {"key": "a.txt"})])
def test_forms_without_the_csrf_token_are_refused(admin, path, data):
    c, _ = admin
    r = c.post(path, data=data)
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post(path, data={**data, "csrf_token": "wrong-token"})
    assert r.status_code == 403


def test_upload_without_csrf_writes_nothing(admin):
    c, _ = admin
    r = c.post("/objects/upload", data={"prefix": ""}, files={"file": ("nocsrf.txt", b"x")})
    assert r.status_code == 403
    assert not any(o.key == "nocsrf.txt" for o in c.app.state.lakehouse.objects().list(""))


def test_a_reader_may_not_start_a_run_or_change_objects(reader):
    c, csrf = reader
    runs_before = len(c.app.state.lakehouse.runs(100))
    r = c.post("/runs", data={"select": "silver.companies", "csrf_token": csrf})
    assert r.status_code == 403 and "needs &#39;write&#39;" in r.text
    assert len(c.app.state.lakehouse.runs(100)) == runs_before
    r = c.post("/objects/upload", data={"prefix": "", "csrf_token": csrf}, files={"file": ("r.txt", b"x")})
    assert r.status_code == 403
    assert 'id="start-run"' not in c.get("/runs").text and 'action="/objects/upload"' not in c.get("/objects").text


def test_objects_upload_browse_download_delete(admin):
    c, csrf = admin
    payload = bytes(range(256)) * 100
    r = c.post("/objects/upload", data={"prefix": "docs/2026/", "csrf_token": csrf},
               files={"file": ("report.bin", payload)})
    assert r.status_code == 200 and "Uploaded docs/2026/report.bin" in r.text
    assert 'href="/objects?prefix=docs/"' in c.get("/objects").text
    listing = c.get("/objects?prefix=docs/2026/").text
    assert "report.bin" in listing and "data-confirm" in listing
    got = c.get("/objects/download?key=docs/2026/report.bin")
    assert got.content == payload and "report.bin" in got.headers["content-disposition"]
    r = c.post("/objects/delete", data={"key": "docs/2026/report.bin", "prefix": "docs/2026/", "csrf_token": csrf})
    assert "Deleted docs/2026/report.bin" in r.text
    assert c.get("/objects/download?key=docs/2026/report.bin").status_code == 404


@pytest.mark.parametrize("key", ["../escape.txt", "a/../../b", "/etc/passwd", "a\\b", "%2e%2e/x"])
def test_object_keys_that_escape_are_refused_in_the_page(admin, key, demo_root):
    c, csrf = admin
    r = c.post("/objects/upload", data={"prefix": key.rsplit("/", 1)[0] + "/" if "/" in key else key + "/",
                                        "csrf_token": csrf}, files={"file": ("x.txt", b"x")})
    assert r.status_code == 400 and 'class="alert error"' in r.text
    assert c.get(f"/objects/download?key={key}").status_code in (400, 404)
    assert not (demo_root.parent / "escape.txt").exists()


def test_run_page_shows_steps_rows_and_quality(admin):
    c, _ = admin
    lh = c.app.state.lakehouse
    run = lh.run_info(lh.runs(100)[-1].run_id)
    text = _text(c.get(f"/runs/{run.run_id}").text)
    assert run.run_id in text and "ingest:vacancies" in text and "silver:vacancies" in text
    assert f"{run.rows_quarantined:,} quarantined" in text
    assert "salary_sane" in text  # a quality result of the run
    assert c.get("/runs/nope-run").status_code == 404


def test_quarantine_shows_rows_with_their_reasons(admin):
    c, _ = admin
    html = c.get("/quarantine?table=silver.vacancies__quarantine").text
    assert "<th>_reasons</th>" in html and "cast:" in html
    rejects = c.get("/quarantine?table=bronze.vacancies__rejects").text
    assert "<th>_reason</th>" in rejects and "<th>_raw</th>" in rejects and "malformed" in rejects


def test_static_files_are_served(anonymous):
    for path in ("/static/app.css", "/static/app.js", "/static/vendor/htmx/htmx.min.js",
                 "/static/vendor/cytoscape/cytoscape.min.js", "/static/vendor/uplot/uPlot.iife.min.js"):
        assert anonymous.get(path).status_code == 200, path


def test_pages_are_not_in_the_openapi_schema(anonymous, admin):
    assert anonymous.get("/api/v1/openapi.json").status_code == 401  # only /health is open
    client, _ = admin  # a signed-in browser reads the schema (the docs page fetches it with the cookie)
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert not any(p in paths for p in ("/", "/sql", "/signin", "/objects/upload"))


def test_empty_states_on_a_project_that_never_ran(empty_root):
    app = make_app(empty_root)
    with TestClient(app) as c:
        sign_in(c)
        assert "The lake has no tables yet" in c.get("/").text and "No runs yet." in c.get("/").text
        assert "The lake has no tables yet" in c.get("/catalog").text
        assert "No runs yet." in c.get("/runs").text
        assert "No quarantine or rejects tables yet" in c.get("/quarantine").text
        assert "The object store is empty" in c.get("/objects").text
        assert c.get("/lineage.json").json() == {"nodes": [], "edges": []}
        assert "The lake has no branches" in c.get("/branches").text
        assert not (empty_root / ".airduck" / "catalog.sqlite").exists()  # looking created nothing
    app.state.lakehouse.close()


# -- branches (issue 14): ?branch= on every page --------------------------------------------------------------------
def _count(html: str) -> int:
    found = re.search(r'<div class="n">([\d,]+)</div><div class="l">rows</div>', html)
    assert found, "no row count in the page"
    return int(found.group(1).replace(",", ""))


def test_a_branch_is_read_on_every_page_and_its_links_keep_it(admin, demo_branch):
    c, csrf = admin
    b = demo_branch
    lh = c.app.state.lakehouse
    main_rows = lh.describe("silver.vacancies").row_count
    on = f"branch={b.name}"
    # the table page (its stats, the preview's count, the profile) reads the branch: the city's rows are gone
    page = c.get(f"/tables/silver.vacancies?tab=preview&{on}").text
    assert _count(page) == main_rows - b.deleted and f"of {main_rows - b.deleted:,}" in page
    assert _count(c.get("/tables/silver.vacancies").text) == main_rows  # main: untouched
    top = {t["value"] for t in lh.profile("silver.vacancies", "city", top=100)["top"]}
    prof = c.get(f"/tables/silver.vacancies/profile?column=city&{on}").text
    assert b.city in top and f">{b.city}<" not in prof and f">{b.city}<" in c.get(
        "/tables/silver.vacancies/profile?column=city").text
    # every link and form of the page keeps the branch; the banner says it is not main
    assert '<a href="/tables/silver.vacancies?tab=preview">Back to main</a>' in page  # the same page on main
    rest = re.sub(r'<form class="branch-menu".*?</form>|<a href="[^"]*">Back to main</a>', "", page, flags=re.S)
    links = re.findall(r'(?:href|hx-get|hx-post|action|data-src)="(/[^"]*)"', rest)
    kept = [u for u in links if not u.startswith(("/static/", "/signout"))]
    assert len(kept) > 10 and all(on in u for u in kept), [u for u in kept if on not in u]
    assert 'id="branch-banner"' in page and f'<option value="{b.name}" selected>' in page
    assert 'id="branch-banner"' not in c.get("/tables/silver.vacancies").text
    # catalog, home, quarantine: the branch's counts
    row = re.search(r'href="/tables/silver.vacancies\?branch=fix-city">silver.vacancies</a></td><td class="num">'
                    r'([\d,]+)<', c.get(f"/catalog?{on}").text)
    assert row and int(row.group(1).replace(",", "")) == main_rows - b.deleted
    # history: the branch's own snapshot (the delete), and the diff from the fork counts the deleted rows
    with lh.on_branch(b.name) as dev:
        snaps = dev.snapshots("silver.vacancies")
    head = snaps[-1].snapshot_id
    assert f'value="{head}"' in c.get(f"/tables/silver.vacancies?tab=history&{on}").text
    diff = _text(c.get(f"/tables/silver.vacancies/diff?start={snaps[-2].snapshot_id}&end={head}&{on}").text)
    assert f"{MINUS}{b.deleted:,} deleted" in diff
    # the SQL page queries the branch (and its download too)
    query = {"sql": "SELECT count(*) AS n FROM silver.vacancies", "csrf_token": csrf}
    on_branch = c.post(f"/sql?{on}", data=query, headers={"HX-Request": "true"}).text
    assert f'<td class="num">{main_rows - b.deleted:,}</td>' in on_branch
    assert f'<td class="num">{main_rows:,}</td>' in c.post("/sql", data=query, headers={"HX-Request": "true"}).text
    assert 'action="/sql?branch=fix-city"' in c.get(f"/sql?{on}").text
    csv_text = c.post(f"/sql/download?{on}", data={**query, "format": "csv"}).text
    assert csv_text.split() == ["n", str(main_rows - b.deleted)]
    # the lineage graph is the plan's; its click-through opens tables on the branch (the page carries it)
    assert 'data-branch="fix-city"' in c.get(f"/lineage?{on}").text
    assert 'data-src="/lineage.json?branch=fix-city"' in c.get(f"/lineage?{on}").text


@pytest.mark.parametrize("path", ["/", "/catalog", "/tables/silver.vacancies?tab=preview",
                                  "/tables/silver.vacancies/preview?offset=50", "/sql", "/runs", "/lineage",
                                  "/quarantine", "/objects", "/branches/nope"])
def test_an_unknown_branch_is_a_404_page_without_a_traceback(admin, path):
    c, _ = admin
    r = c.get(path + ("&" if "?" in path else "?") + "branch=nope")
    assert r.status_code == 404 and 'class="alert error"' in r.text, r.text
    assert "there is no branch &#39;nope&#39;" in r.text and "Traceback" not in r.text
    assert 'id="branch-banner"' not in r.text and 'href="/?branch=nope"' not in r.text  # its links go to main


def test_an_unknown_branch_in_a_form_or_the_graph_is_refused(admin):
    c, csrf = admin
    r = c.post("/sql?branch=nope", data={"sql": "SELECT 1", "csrf_token": csrf}, headers={"HX-Request": "true"})
    assert r.status_code == 404 and "there is no branch" in r.text and "<html" not in r.text
    r = c.get("/lineage.json?branch=nope")
    assert r.status_code == 404 and r.json()["error"]["message"] == "there is no branch 'nope'"
    r = c.get("/?branch=Not%20A%20Name")
    assert r.status_code == 400 and "is not a branch name" in r.text


def test_a_run_is_not_started_from_a_branch(admin, demo_branch):
    c, csrf = admin
    lh = c.app.state.lakehouse
    before = len(lh.runs(100))
    page = c.get(f"/runs?branch={demo_branch.name}").text
    assert 'id="start-run"' not in page and "airduck run --branch fix-city" in page
    r = c.post(f"/runs?branch={demo_branch.name}", data={"select": "silver.companies", "csrf_token": csrf})
    assert r.status_code == 409 and "a run started in the browser runs on main" in r.text
    assert len(lh.runs(100)) == before
    # objects are one store for every branch: the page says so
    assert 'id="objects-not-branched"' in c.get(f"/objects?branch={demo_branch.name}").text
    assert 'id="objects-not-branched"' not in c.get("/objects").text


def test_branches_page_lists_them_and_diffs_one_against_its_base(admin, demo_branch):
    c, _ = admin
    b = demo_branch
    [listed] = [x for x in c.app.state.lakehouse.branches() if x.name == b.name]
    html = c.get("/branches").text
    row = re.search(r'<tr><td class="mono"><a href="/\?branch=fix-city">fix-city</a></td>(.*?)</tr>', html, re.S)
    assert row and f">{listed.base}<" in row.group(1) and f">{listed.head_snapshot}<" in row.group(1)
    assert 'href="/branches/fix-city"' in row.group(1)
    diff = c.get(f"/branches/{b.name}").text
    line = re.search(r'<td class="mono">silver.vacancies</td>(.*?)</tr>', diff, re.S)
    assert line and f"{MINUS}{b.deleted:,}" in line.group(1) and "+0" in line.group(1)
    assert 'href="/tables/silver.vacancies?branch=fix-city"' in line.group(1)
    assert "Nothing changed" not in diff
