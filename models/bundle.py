"""The scoring bundle: both models and the feature spec as one MLflow pyfunc model."""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext

from kam.models.integrity import MANIFEST, write_manifest
from kam.models.scorer import Scorer

ARTIFACT_NAME = "scoring_bundle"
# Named, not inferred: inference imports the model in a subprocess and takes ~10 s a run.
RUNTIME = ("mlflow", "lightgbm", "scikit-learn", "scipy", "pandas", "numpy", "pyarrow")
PACKAGE_DIR = Path(__file__).resolve().parent
# The bundle's own copy of the code keeps the namespace (kam.models) that its pickles name, with
# an empty kam/__init__.py so that it loads where kam itself is not installed.
_NAMESPACE_INIT = '"""kam.models as carried by a scoring bundle."""\n'


def _bundle_code(root: Path) -> Path:
    """Write ``root/kam`` holding only the models package; return its path."""
    package = root / "kam"
    shutil.copytree(PACKAGE_DIR, package / "models", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text(_NAMESPACE_INIT)
    return package


class ScoringBundle(PythonModel):
    """Pyfunc wrapper: loads the scorer from its artifacts and applies the same feature spec."""

    def load_context(self, context: PythonModelContext) -> None:
        self.scorer = Scorer.load(dict(context.artifacts))

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame:
        return self.scorer.predict_frame(model_input).reset_index(drop=True)


def log_bundle(
    scorer: Scorer,
    example: pd.DataFrame,
    *,
    registered_name: str | None = None,
) -> Any:
    """Log ``scorer`` as a pyfunc model in the active run, optionally registering it.

    Parameters
    ----------
    scorer
        The fitted scorer.
    example
        A few feature rows: they fix the input signature (names and types) and the example.
    registered_name
        Registry name to create a new version under, or None.

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    columns = list(scorer.spec.names)
    sample = example[columns].head(5).copy()
    for name in columns:
        if name in scorer.spec.categories:
            sample[name] = sample[name].astype("string").astype(object)
        elif not pd.api.types.is_integer_dtype(sample[name]):
            # counts stay integers (long in the signature), so snapshot frames pass as they are
            sample[name] = pd.to_numeric(sample[name], errors="coerce").astype("float64")
    output = scorer.predict_frame(sample)
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = scorer.save(Path(tmp) / "scorer")
        # the digests travel with the files, so a serving process can refuse an altered file
        # before LightGBM parses it (models/integrity.py)
        (Path(tmp) / "manifest").mkdir()
        artifacts[MANIFEST.removesuffix(".json")] = str(
            write_manifest(artifacts, Path(tmp) / "manifest")
        )
        code = _bundle_code(Path(tmp) / "code")
        return mlflow.pyfunc.log_model(
            name=ARTIFACT_NAME,
            python_model=ScoringBundle(),
            artifacts=artifacts,
            signature=infer_signature(sample, output),
            input_example=sample,
            registered_model_name=registered_name,
            # the bundle carries the models package itself, so it loads without kam installed
            code_paths=[str(code)],
            pip_requirements=[f"{name}=={version(name)}" for name in RUNTIME],
        )
