"""The schema is one thing: `covfit schema` (generated from the C++ typed tables) equals
analysis/covfit/schema.json, docs/FORMAT.md's column tables, the reader's digest for the
format version, and the columns of files covfit writes."""

import json
import os
import shutil
import subprocess
import sys
import unittest

import h5py

import covfit
from covfit import reader

from test_reader import (  # noqa: F401
    COVFIT_BIN, SOURCE_DIR, make_tmpdir, small_results, small_sweep, tearDownModule,
)


class SchemaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dump = subprocess.run([COVFIT_BIN, "schema"], check=True, stdout=subprocess.PIPE,
                                  text=True, timeout=60).stdout
        cls.schema = json.loads(cls.dump)

    def test_dump_equals_the_readers_copy(self):
        with open(os.path.join(os.path.dirname(reader.__file__), "schema.json")) as fh:
            self.assertEqual(fh.read(), self.dump,
                             "covfit schema differs from analysis/covfit/schema.json: run "
                             "`build/covfit schema > analysis/covfit/schema.json`")

    def test_version_and_digest(self):
        self.assertEqual(self.schema["format_version"], covfit.FORMAT_VERSION)
        self.assertIn(covfit.FORMAT_VERSION, covfit.READABLE_VERSIONS)
        self.assertEqual(
            reader.SCHEMA_DIGESTS.get(self.schema["format_version"]), reader.schema_digest(self.schema),
            "tables or columns changed: bump kFormatVersion (include/covfit/io/results_file.hpp) and "
            "FORMAT_VERSION (analysis/covfit/reader.py), and add the new digest to SCHEMA_DIGESTS")

    def test_docs_match(self):
        r = subprocess.run([sys.executable, os.path.join(SOURCE_DIR, "scripts", "format-doc"), "--check"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_every_column_described(self):
        for t in self.schema["tables"]:
            for c in t["columns"]:
                self.assertTrue(c["description"], (t["path"], c["name"]))

    def test_files_have_the_schemas_columns(self):
        d = make_tmpdir("covfit_schema_")
        try:
            paths = [small_results(), small_sweep(d)]
            tables = {t["path"]: [c["name"] for c in t["columns"]] for t in self.schema["tables"]}
            seen = set()
            for p in paths:
                with h5py.File(p, "r") as f:
                    for path, cols in tables.items():
                        if path.lstrip("/") in f:
                            self.assertEqual(list(f[path].dtype.names), cols, path)
                            seen.add(path)
            self.assertEqual(seen, set(tables))
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
