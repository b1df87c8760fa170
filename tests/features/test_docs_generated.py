"""The generated reference docs match the code they are generated from."""

from __future__ import annotations

from pathlib import Path

from features.catalogue import catalogue_markdown, contract_markdown, feature_specs
from features.config import FeatureConfig
from features.contract import PERSONAL_COLUMNS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_feature_catalogue_is_current() -> None:
    expected = catalogue_markdown(FeatureConfig())
    assert (DOCS / "feature-catalogue.md").read_text(encoding="utf-8") == expected, (
        "run `srl catalogue` to regenerate docs/feature-catalogue.md"
    )


def test_data_contract_doc_is_current() -> None:
    expected = contract_markdown()
    assert (DOCS / "data-contract.md").read_text(encoding="utf-8") == expected, (
        "run `srl catalogue` to regenerate docs/data-contract.md"
    )


def test_no_feature_is_personal_data() -> None:
    config = FeatureConfig(custom_columns={"categorical": ("crm_custom_tech_stack",)})
    names = {spec.name for spec in feature_specs(config)}

    assert not names & PERSONAL_COLUMNS
    assert len(names) == len(feature_specs(config))
