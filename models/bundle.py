"""The scoring bundle: both models and the feature spec as one MLflow pyfunc model.

:class:`ScoringBundle` is the models layer's wrapper: the scorer's four predictions. The bundle
the product registers is a subclass that returns the whole score record
(:class:`kam.pyfunc.ProductBundle`, above serving); training logs whichever class its caller
hands it (:func:`log_bundle`'s ``bundle``), so this layer never imports the ones above it.
Every subclass keeps the ``scorer`` attribute, which is what the service and ``kam score`` read
(:func:`kam.models.registry.load_model`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any, ClassVar

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext

from kam.models.integrity import MANIFEST, write_manifest
from kam.models.scorer import Scorer

ARTIFACT_NAME = "scoring_bundle"
# Named, not inferred: inference imports the model in a subprocess and takes ~10 s a run.
RUNTIME = ("mlflow", "lightgbm", "scikit-learn", "scipy", "pandas", "numpy", "pyarrow")
PACKAGE_DIR = Path(__file__).resolve().parent
# The bundle's own copy of the code keeps the namespace (kam.models) that its pickles name, with
# an empty kam/__init__.py so that it loads where kam itself is not installed.
_NAMESPACE_INIT = '"""kam as carried by a scoring bundle."""\n'
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


class ScoringBundle(PythonModel):
    """Pyfunc wrapper: loads the scorer from its artifacts and applies the same feature spec."""

    #: distributions pinned in the bundle's requirements
    runtime: ClassVar[tuple[str, ...]] = RUNTIME

    scorer: Scorer

    @classmethod
    def code(cls) -> dict[str, Path]:
        """The parts of kam the bundle carries: path under ``kam/`` -> file or folder."""
        return {"models": PACKAGE_DIR}

    def load_context(self, context: PythonModelContext) -> None:
        self.scorer = Scorer.load(dict(context.artifacts))
        self.configure(context.model_config or {})

    def configure(self, config: Mapping[str, Any]) -> None:
        """Take the settings logged with the bundle (see :meth:`prepare`); none here."""

    def prepare(self, scorer: Scorer, book: pd.DataFrame) -> dict[str, Any]:
        """Hold ``scorer`` and return the settings to log with it (``model_config``).

        ``book`` is a set of feature rows the model scores (the run's test snapshot), for
        settings that are facts about a whole book rather than about one row.
        """
        self.scorer = scorer
        return {}

    def example(self, sample: pd.DataFrame) -> pd.DataFrame:
        """The input example logged, from a few feature rows (as they are here)."""
        return sample

    def signature(self, sample: pd.DataFrame) -> ModelSignature:
        """Input and output schema, from the input example."""
        return infer_signature(sample, self.predict(None, sample))

    def predict(
        self, context: PythonModelContext | None, model_input: pd.DataFrame, params: Any = None
    ) -> pd.DataFrame:
        return self.scorer.predict_frame(model_input).reset_index(drop=True)


#: what training is handed to log: a ScoringBundle class (or any callable making one)
BundleFactory = Callable[[], ScoringBundle]


def _bundle_code(root: Path, parts: Mapping[str, Path]) -> Path:
    """Write ``root/kam`` holding ``parts`` (path under kam -> source); return its path."""
    package = root / "kam"
    package.mkdir(parents=True)
    for target, source in parts.items():
        destination = package / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=_IGNORED)
        else:
            shutil.copyfile(source, destination)
    (package / "__init__.py").write_text(_NAMESPACE_INIT)
    return package


def _sample(scorer: Scorer, example: pd.DataFrame) -> pd.DataFrame:
    columns = list(scorer.spec.names)
    sample = example[columns].head(5).copy()
    for name in columns:
        if name in scorer.spec.categories:
            sample[name] = sample[name].astype("string").astype(object)
        elif not pd.api.types.is_integer_dtype(sample[name]):
            # counts stay integers (long in the signature), so snapshot frames pass as they are
            sample[name] = pd.to_numeric(sample[name], errors="coerce").astype("float64")
    return sample


def log_bundle(
    scorer: Scorer,
    example: pd.DataFrame,
    *,
    registered_name: str | None = None,
    bundle: BundleFactory = ScoringBundle,
) -> Any:
    """Log ``scorer`` as a pyfunc model in the active run, optionally registering it.

    Parameters
    ----------
    scorer
        The fitted scorer.
    example
        Feature rows the model scores (the test snapshot): a few of them fix the input
        example, and the bundle may derive settings from all of them (:meth:`prepare`).
    registered_name
        Registry name to create a new version under, or None.
    bundle
        The pyfunc class to log (a :class:`ScoringBundle` or a subclass).

    Returns
    -------
    mlflow.models.model.ModelInfo
    """
    sample = _sample(scorer, example)
    probe = bundle()
    config = probe.prepare(scorer, example)
    sample = probe.example(sample)
    signature = probe.signature(sample)
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = scorer.save(Path(tmp) / "scorer")
        # the digests travel with the files, so a serving process can refuse an altered file
        # before LightGBM parses it (models/integrity.py)
        (Path(tmp) / "manifest").mkdir()
        artifacts[MANIFEST.removesuffix(".json")] = str(
            write_manifest(artifacts, Path(tmp) / "manifest")
        )
        code = _bundle_code(Path(tmp) / "code", probe.code())
        return mlflow.pyfunc.log_model(
            name=ARTIFACT_NAME,
            # a fresh instance: the probe holds the scorer, which travels as artifacts instead
            python_model=bundle(),
            artifacts=artifacts,
            signature=signature,
            input_example=sample,
            model_config=config or None,
            registered_model_name=registered_name,
            # the bundle carries the kam code it runs, so it loads without kam installed
            code_paths=[str(code)],
            pip_requirements=[f"{name}=={version(name)}" for name in probe.runtime],
        )
