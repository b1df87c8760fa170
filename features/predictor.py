"""The re-conversion model as one object: raw contract rows in, calibrated probability out.

It bundles the feature config, the learned category vocabularies, the LightGBM booster and
the calibration map. It is saved as plain files (LightGBM's own text format and JSON; no
pickle), and training, ``srl evaluate``, batch scoring and the API all predict through it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from features.age_curve import AgeCurve
from features.config import FeatureConfig
from features.dataset import ExampleSet
from features.encoding import CategoryVocabulary
from features.engine import FeatureTable, compute_features
from features.examples import Examples
from features.history import History
from features.output import OutputWriteError
from features.records import ScoreRequest
from features.request_history import requests_history

if TYPE_CHECKING:  # imported where a booster is made: with scikit-learn and SciPy, about 1.2 s
    import lightgbm as lgb

MODEL_FORMAT_VERSION = 1
BOOSTER_FILE = "booster.txt"
METADATA_FILE = "model.json"
#: The feature a rejection's age is read from (days from the rejection to ``as_of``).
AGE_FEATURE = "days_since_rejection"


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the booster's raw probability to a calibrated one.

    ``isotonic`` interpolates linearly between the fitted points ``(x, y)``; ``platt``
    applies ``sigmoid(a * logit(p) + b)``; ``none`` is the identity.
    """

    method: Literal["isotonic", "platt", "none"] = "none"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw booster probabilities."""
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(raw, self.x, self.y)
        if self.method == "platt":
            clipped = np.clip(raw, 1e-12, 1 - 1e-12)
            logit = np.log(clipped / (1 - clipped))
            return 1.0 / (1.0 + np.exp(-(self.a * logit + self.b)))
        return raw

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "method": self.method,
            "x": list(self.x),
            "y": list(self.y),
            "a": self.a,
            "b": self.b,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Calibration:
        """Rebuild from ``to_dict`` output."""
        return Calibration(
            method=data["method"],
            x=tuple(data.get("x", ())),
            y=tuple(data.get("y", ())),
            a=float(data.get("a", 1.0)),
            b=float(data.get("b", 0.0)),
        )


@dataclass
class ReconversionModel:
    """Everything needed to turn a lead's rows into a calibrated re-conversion probability.

    Attributes:
        config: the feature and label settings the model was trained with.
        vocabulary: category vocabularies learned in training.
        booster: the LightGBM model.
        calibration: the map from raw to calibrated probability.
        feature_names: the booster's features, in order.
        metadata: free JSON metadata (trained at, metrics, data fingerprint, ...).
    """

    config: FeatureConfig
    vocabulary: CategoryVocabulary
    booster: lgb.Booster
    calibration: Calibration
    feature_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    num_threads: int = 0
    #: The thread that made the model (it predicts with ``booster`` itself) and the
    #: other threads' own copies (see ``thread_booster``).
    _owner_thread: int = field(
        default_factory=threading.get_ident, init=False, repr=False, compare=False
    )
    _per_thread: threading.local = field(
        default_factory=threading.local, init=False, repr=False, compare=False
    )
    #: ``metadata["age_curve"]`` as read last, and what it was read into.
    _curve_read: tuple[object, AgeCurve | None] = field(
        default=(None, None), init=False, repr=False, compare=False
    )

    @property
    def trained_age_days(self) -> float | None:
        """The oldest rejection, in days from the rejection to ``as_of``, that the model was
        both trained and calibrated on: the smaller of the two windows' oldest (None for a
        model that does not record them)."""
        return trained_age(self.metadata.get("rejection_age_days"))

    def beyond_trained_age(self, features: FeatureTable) -> np.ndarray:
        """Per row, whether its rejection is older, in whole days, than ``trained_age_days``:
        its probability is then an extrapolation. Whole days, as the re-score offsets it is
        compared with are: a model that knows rejections 90 days old knows them until the
        91st day starts. All False when the model records no ages."""
        age = features.columns[AGE_FEATURE]
        limit = self.trained_age_days
        if limit is None:
            return np.zeros(len(age), dtype=bool)
        return np.asarray(np.floor(age) > limit, dtype=bool)

    def matrix(self, features: FeatureTable) -> np.ndarray:
        """The booster's input matrix for raw feature columns (checked against training)."""
        if features.names != self.feature_names:
            missing = sorted(set(self.feature_names) - set(features.names))
            raise ValueError(f"features differ from the model's; missing: {missing[:10]}")
        return self.vocabulary.encode(features)

    def thread_booster(self) -> lgb.Booster:
        """The booster the calling thread predicts with.

        LightGBM's predictor set-up writes state shared by every call on one booster
        (lightgbm-org/LightGBM#6142), so threads scoring with one model at once (the API's
        event loop and a batch in a worker thread) never share a booster, nor wait for each
        other: the thread that made the model uses ``booster``, any other thread its own
        copy, made from the model's text on its first call (the same trees, the same
        predictions).
        """
        if threading.get_ident() == self._owner_thread:
            return self.booster
        own: lgb.Booster | None = getattr(self._per_thread, "booster", None)
        if own is None:
            import lightgbm as lgb

            own = lgb.Booster(model_str=self.booster.model_to_string())
            self._per_thread.booster = own
        return own

    @property
    def age_curve(self) -> AgeCurve | None:
        """How comebacks fall past ``trained_age_days`` (``features.age_curve``), from the
        metadata's ``age_curve``; None for a model that does not record one."""
        document = self.metadata.get("age_curve")
        read, curve = self._curve_read
        if document is not read:
            curve = AgeCurve.from_dict(document) if isinstance(document, dict) else None
            self._curve_read = (document, curve)
        return curve

    def age_factors(self, matrix: np.ndarray) -> np.ndarray | None:
        """Each row's age factor (``AgeCurve.factor``); None without an age curve."""
        curve = self.age_curve
        if curve is None or len(matrix) == 0:
            return None
        return curve.factor(matrix[:, self._age_column])

    @functools.cached_property
    def _age_column(self) -> int:
        """Where the age feature is in the matrix."""
        return self.feature_names.index(AGE_FEATURE)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for an encoded feature matrix, each past the trained age
        times its age factor (``age_factors``)."""
        if len(matrix) == 0:
            return np.zeros(0)
        raw = self.thread_booster().predict(matrix, num_threads=self.num_threads)
        probability = self.calibration.apply(np.asarray(raw, dtype=np.float64))
        factors = self.age_factors(matrix)
        return probability if factors is None else probability * factors

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        """Per-feature SHAP contributions in log-odds (last column: the expected value).

        The age factor's own shift, ``log(factor)`` (the change in log-odds it makes to a
        small probability), is added to the age feature's contribution, so a reason names
        the age when the curve lowered the score.
        """
        if len(matrix) == 0:
            return np.zeros((0, len(self.feature_names) + 1))
        booster = self.thread_booster()
        values = booster.predict(matrix, pred_contrib=True, num_threads=self.num_threads)
        values = np.asarray(values, dtype=np.float64)
        factors = self.age_factors(matrix)
        if factors is not None:
            values[:, self._age_column] += np.log(factors)
        return values

    def predict_features(self, features: FeatureTable) -> np.ndarray:
        """Calibrated probabilities for raw feature columns."""
        return self.predict_matrix(self.matrix(features))

    def predict_examples(self, history: History, examples: Examples) -> np.ndarray:
        """Calibrated probabilities for examples of a history."""
        return self.predict_features(compute_features(history, examples, self.config))

    def predict_set(self, examples: ExampleSet) -> np.ndarray:
        """Calibrated probabilities for a built example set."""
        return self.predict_features(examples.features)

    def request_features(
        self, requests: Sequence[ScoreRequest], now: datetime | None = None
    ) -> FeatureTable:
        """The raw feature rows of scoring requests, in order (only rows at or before as_of)."""
        history, examples = requests_history(requests, self.config, now or datetime.now(UTC))
        return compute_features(history, examples, self.config)

    def predict_requests(
        self, requests: Sequence[ScoreRequest], now: datetime | None = None
    ) -> np.ndarray:
        """Calibrated probabilities for scoring requests, in order."""
        if not requests:
            return np.zeros(0)
        return self.predict_features(self.request_features(requests, now))

    def save(self, directory: str | Path) -> Path:
        """Write the model as ``booster.txt`` (LightGBM text) and ``model.json``.

        Raises:
            OSError: a file could not be written (``OutputWriteError`` for the booster,
                whose failed write LightGBM reports as its own error).
        """
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        booster = target / BOOSTER_FILE
        import lightgbm as lgb

        try:
            self.booster.save_model(str(booster))
        except lgb.basic.LightGBMError as error:
            raise OutputWriteError(booster, str(error)) from error
        document = {
            "format_version": MODEL_FORMAT_VERSION,
            "booster_sha256": hashlib.sha256(booster.read_bytes()).hexdigest(),
            "config": self.config.model_dump(mode="json"),
            "vocabulary": self.vocabulary.to_dict(),
            "calibration": self.calibration.to_dict(),
            "feature_names": self.feature_names,
            "metadata": _json_safe(self.metadata),
        }
        (target / METADATA_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")
        return target

    @staticmethod
    def load(directory: str | Path, num_threads: int = 0) -> ReconversionModel:
        """Read a model written by ``save``.

        Raises:
            ValueError: the files are not a model of this format, or ``booster.txt`` is not
                the file that was saved (damaged, cut short, replaced).
        """
        import lightgbm as lgb

        source = Path(directory)
        document = json.loads((source / METADATA_FILE).read_text(encoding="utf-8"))
        if document.get("format_version") != MODEL_FORMAT_VERSION:
            raise ValueError(
                f"{source / METADATA_FILE}: model format {document.get('format_version')} "
                f"is not supported (expected {MODEL_FORMAT_VERSION})"
            )
        booster_text = _checked_booster(source / BOOSTER_FILE, document.get("booster_sha256"))
        return ReconversionModel(
            config=FeatureConfig.model_validate(document["config"]),
            vocabulary=CategoryVocabulary.from_dict(document["vocabulary"]),
            booster=lgb.Booster(model_str=booster_text),
            calibration=Calibration.from_dict(document["calibration"]),
            feature_names=list(document["feature_names"]),
            metadata=document.get("metadata", {}),
            num_threads=num_threads,
        )


def trained_age(ages: object) -> float | None:
    """The oldest rejection both trained and calibrated on, from ``rejection_age_days``
    (``{"trained": days, "calibrated": days}``, either may be None): the smaller of the two;
    None when neither is known."""
    if not isinstance(ages, dict):
        return None
    known = [float(ages[k]) for k in ("trained", "calibrated") if ages.get(k) is not None]
    return min(known) if known else None


#: How LightGBM ends a saved model's text: a file that does not is cut short.
BOOSTER_TRAILER = "end of parameters"


def _checked_booster(path: Path, digest: str | None) -> str:
    """The text of a saved booster, once it is known to be the file ``save`` wrote.

    LightGBM's reader may abort the whole process on a damaged file (a serving worker
    with it) rather than raise, so the file is checked first: against the digest recorded
    at save, or, for a model saved before digests were recorded, for LightGBM's closing
    section.

    Raises:
        ValueError: the file does not match its digest, or is cut short.
    """
    data = path.read_bytes()
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{path}: not the booster that was saved (its SHA-256 differs)")
    text = data.decode("utf-8")
    if digest is None and BOOSTER_TRAILER not in text[-4096:]:
        raise ValueError(f"{path}: cut short (no {BOOSTER_TRAILER!r} section)")
    return text


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value
