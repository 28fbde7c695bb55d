"""Our packages live under one ``kam`` namespace: a user's own modules neither shadow nor are
shadowed by them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

USER_MODULES = ("features", "models", "training", "serving")

# Imports every module of the kam package, then reports which modules the user's folder
# provided and whether any of our packages leaked into the top level.
PROBE = """
import importlib, json, pkgutil, sys
import kam
USER_MODULES = ("features", "models", "training", "serving")
names = [m.name for m in pkgutil.walk_packages(kam.__path__, "kam.")]
for name in names:
    importlib.import_module(name)
import models
print(json.dumps({
    "imported": len(names),
    "user_models": getattr(models, "WHO", None),
    "top_level": sorted(
        n for n in sys.modules if n.split(".")[0] in USER_MODULES and not n.startswith("kam.")
        and n != "models"
    ),
    "kam_files_outside": sorted(
        m.__name__ for n, m in list(sys.modules.items())
        if n.startswith("kam.") and getattr(m, "__file__", None) and "kam" not in m.__file__
    ),
}))
"""


def test_kam_imports_beside_user_modules_of_the_same_names(tmp_path: Path) -> None:
    for name in USER_MODULES:
        (tmp_path / f"{name}.py").write_text(f'WHO = "user {name}"\n')
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] > 40
    assert report["user_models"] == "user models"
    assert report["top_level"] == []
    assert report["kam_files_outside"] == []
