"""Parquet: read typed; a file that cannot be read is rejected as a whole and the run goes on."""

from __future__ import annotations

import contextlib

import duckdb

from airduck.bronze.files.reader import _META, FileReader
from airduck.bronze.table import StagedColumn, insert_sql, plan_columns, run
from airduck.lake.connection import quote_ident


class ParquetReader(FileReader):
    """Reads a Parquet file typed; an unreadable file is one rejects row."""

    def read(self, fmt: str = "parquet") -> None:
        with contextlib.closing(self.con.cursor()) as probe:
            try:
                described = run(probe, f"DESCRIBE SELECT * FROM read_parquet($path{self._opts()})", self.params).fetchall()
                reads = ", ".join(f"count({quote_ident(r[0])})" for r in described)
                good = int(run(probe, f"SELECT count(*){', ' + reads if reads else ''} FROM read_parquet($path{self._opts()})",
                               self.params).fetchall()[0][0])
            except duckdb.Error as exc:
                self._config_error(exc)
                self.reject_file(f"cannot read the Parquet file: {self._clean(str(exc))}")
                return
        if not good or not described:
            return
        staged = [StagedColumn(f"c{i}", r[0], r[1], text=False) for i, r in enumerate(described)]
        plan, self.result.new_columns = plan_columns(self.con, self.name, staged, lambda c: {})
        cols = ", ".join(f"{quote_ident(r[0])} AS c{i}" for i, r in enumerate(described))
        staging = f"SELECT {cols}, file_row_number + 1 AS __rn FROM read_parquet($path, file_row_number=true{self._opts()})"
        self.result.rows = int(run(self.con, insert_sql(self.name, plan, staging, _META), self.params).fetchall()[0][0])
