"""The demo: a deterministic, messy job-market dataset and a ready-made project over it.

`create_demo_project(dir)` writes a complete project (airduck.yml, a dbt gold project, README) and its first
days of data; `generate(dir, days)` adds more days. See :mod:`airduck.demo.generator` for the data layout.
"""

from airduck.demo.generator import DEFAULT_SEED, DEFAULT_START, GenerateResult, generate
from airduck.demo.project import create_demo_project, is_demo_project, require_demo_project

__all__ = ["DEFAULT_SEED", "DEFAULT_START", "GenerateResult", "create_demo_project", "generate", "is_demo_project", "require_demo_project"]
