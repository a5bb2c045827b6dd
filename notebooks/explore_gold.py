# /// script
# requires-python = ">=3.11"
# dependencies = ["airduck", "marimo"]
# ///
"""Explore the demo's gold marts through airduck's Python API.

    airduck demo                                   # builds ./airduck-demo and runs it
    marimo edit notebooks/explore_gold.py          # interactive
    AIRDUCK_PROJECT=airduck-demo python notebooks/explore_gold.py   # headless, as the tests run it
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import os

    import marimo as mo

    import airduck

    return airduck, mo, os


@app.cell
def _(airduck, mo, os):
    project_dir = os.environ.get("AIRDUCK_PROJECT", "airduck-demo")
    lh = airduck.open(project_dir)
    marts = [t.qualified for t in lh.tables() if t.schema == "gold"]
    assert marts, f"no gold marts in {project_dir}: run `airduck demo` first"
    mo.md(f"## Gold marts in `{project_dir}`\n\n" + "\n".join(f"- `{m}`" for m in marts))
    return lh, marts


@app.cell
def _(lh, mo):
    skills = lh.query(
        "SELECT * FROM gold.top_growing_skills ORDER BY 1 LIMIT 10"
    ).df()
    assert len(skills) > 0
    mo.vstack([mo.md("### Top growing skills"), mo.ui.table(skills)])
    return (skills,)


@app.cell
def _(lh, mo):
    salaries = lh.table("gold.salary_by_skill_city_month").df()
    assert len(salaries) > 0
    top = salaries.sort_values(salaries.columns[-1], ascending=False).head(10)
    mo.vstack([mo.md(f"### Salary by skill, city and month ({len(salaries):,} rows)"), mo.ui.table(top)])
    return (salaries,)


@app.cell
def _(lh, mo):
    hiring = lh.table("gold.company_hiring_activity").to_arrow_table()
    assert hiring.num_rows > 0
    history = lh.snapshots("gold.company_hiring_activity")
    mo.md(
        f"### Company hiring activity\n\n{hiring.num_rows:,} rows; the mart has "
        f"{len(history)} snapshot(s), the latest: *{history[-1].message}*"
    )
    return (hiring,)


@app.cell
def _(lh, mo):
    quarantined = lh.query("SELECT count(*) FROM silver.vacancies__quarantine").fetchone()[0]
    mo.md(f"{quarantined:,} vacancy rows were quarantined with their reasons (see `silver.vacancies__quarantine`).")
    return (quarantined,)


if __name__ == "__main__":
    app.run()
