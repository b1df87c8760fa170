"""The generated reference docs match the code they are generated from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from features.catalogue import catalogue_markdown, contract_markdown, feature_specs
from features.config import CustomColumns, FeatureConfig
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


@pytest.mark.parametrize(
    "column",
    [
        "email",
        "Work_Email",
        "e-mail",
        "FirstName",
        "lastname",
        "Surname",
        "phone",
        "MobilePhone",
        "street_address",
        "ZipCode",
        "zip",
        "date_of_birth",
        "DOB",
        "ssn",
        "last_ip",
        "Name",
        "contact_name",
        "OwnerName",
        "display_name",
        "nickname",
        "username",
        "mail",
        "tel",
        "WhatsApp",
        "gender",
        "national_id",
        "tax_id",
        "iban",
        "sexual_orientation",
        "race",
        "nationality",
        "marital_status",
        "salary",
    ],
)
@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_custom_column_named_as_personal_data_is_never_a_feature(column: str, kind: str) -> None:
    with pytest.raises(ValidationError, match="is personal data and can never be a feature"):
        CustomColumns.model_validate({kind: (column,)})


@pytest.mark.parametrize(
    "column",
    [
        "crm_plan",
        "company_size_band",
        "crm_tech_stack",
        "adobe_user",
        "zipline_plan",
        "company_name",
        "CampaignName",
        "product_name",
        "mailing_list",
        "territory_name",
        "country_name",
        "status_name",
        "DealName",
        "trace_id",
    ],
)
def test_other_custom_columns_may_be_features(column: str) -> None:
    assert CustomColumns(categorical=(column,)).categorical == (column,)
