"""Project scaffolding: `airduck init` and the demo (its template and its data generator), in one place.

`init_project(dir)` writes a new project with a commented airduck.yml (template ``templates/init/``).
`create_demo_project(dir)` writes the job-market demo project (template ``templates/demo/``: airduck.yml, a dbt
gold project, README) and its first days of data; `generate(dir, days)` adds more days. See
:mod:`airduck.scaffold.generator` for the data layout.
"""

from airduck.scaffold.demo import create_demo_project, is_demo_project, require_demo_project
from airduck.scaffold.generator import DEFAULT_SEED, DEFAULT_START, GenerateResult, generate
from airduck.scaffold.init import init_project

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_START",
    "GenerateResult",
    "create_demo_project",
    "generate",
    "init_project",
    "is_demo_project",
    "require_demo_project",
]
