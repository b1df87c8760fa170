"""Score and route feature rows: the one path shared by the API and the batch job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from features.engine import FeatureTable
from features.predictor import ReconversionModel
from serving.contact import ContactNow
from serving.policy import RoutingPolicy
from serving.routing import Routes, RoutingInputs, flags_or_none, route

ReasonMode = Literal["none", "top", "all"]


@dataclass(frozen=True)
class Scored:
    """Probabilities, routing decisions and (optionally) reasons for a set of leads.

    Attributes:
        probability: calibrated re-conversion probabilities.
        routes: the routing decisions.
        matrix: the encoded feature matrix (kept for explanations).
        inputs: what routing read (decoded from the features).
    """

    probability: np.ndarray
    routes: Routes
    matrix: np.ndarray
    inputs: RoutingInputs

    @property
    def beyond_trained_age(self) -> np.ndarray:
        """Per lead, whether its rejection is older than the model was trained on, so that
        its probability is an extrapolation (``ReconversionModel.beyond_trained_age``)."""
        return flags_or_none(self.inputs.beyond_trained_age, len(self.probability))


def score_features(
    model: ReconversionModel,
    features: FeatureTable,
    as_of: np.ndarray,
    policy: RoutingPolicy,
    *,
    contact: ContactNow | None,
) -> Scored:
    """Predict and route every row of a feature table.

    Args:
        model: the re-conversion model.
        features: raw feature columns from the feature engine.
        as_of: each row's scoring moment, int64 microseconds (UTC).
        policy: the routing policy.
        contact: each row's contact signals from the lead's whole history, rows after
            ``as_of`` included (``ContactNow.read``): its latest consent, so that an
            opt-out recorded after ``as_of`` still suppresses, and whether a
            ``do_not_contact`` rejection of the lead still stands. None only to replay
            examples from their features alone (capacity planning): then only the consent
            and reason at ``as_of`` suppress.
    """
    matrix = model.matrix(features)
    probability = model.predict_matrix(matrix)
    beyond = model.beyond_trained_age(features)
    inputs = RoutingInputs.from_features(features, probability, as_of, policy, contact, beyond)
    return Scored(probability, route(inputs, policy), matrix, inputs)
