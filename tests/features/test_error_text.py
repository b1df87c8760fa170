"""How failures read: one line, bounded, credentials masked, the cause kept."""

from __future__ import annotations

from features.error_text import error_summary, without_credentials


def test_credentials_are_masked_in_every_url_of_a_text() -> None:
    text = "GET http://ann:pw@reg:5000/a and postgresql://u:p%40ss@db/x, not me@example.com"

    assert without_credentials(text) == (
        "GET http://***@reg:5000/a and postgresql://***@db/x, not me@example.com"
    )


def test_passwords_holding_slashes_quotes_or_at_signs_and_query_secrets_are_masked() -> None:
    texts = {
        "postgresql://user:pa/ss@db/x": "postgresql://***@db/x",
        "postgresql://user:pa'ss@db/x": "postgresql://***@db/x",
        "http://u:p@ss@host:5000/a": "http://***@host:5000/a",
        "postgresql://db/x?user=u&password=s3cr/t&sslmode=require": (
            "postgresql://db/x?user=u&password=***&sslmode=require"
        ),
    }

    assert {text: without_credentials(text) for text in texts} == texts


def test_a_long_message_keeps_its_start_and_its_cause() -> None:
    # Given MLflow's message: the request first, the cause at the very end, over lines
    error = ConnectionError(
        "API request to http://operator:Secret@registry:5000/api/2.0/mlflow/registered-models"
        "/alias failed with exception HTTPConnectionPool(host='registry', port=5000): "
        + "Max retries exceeded with url: /api/2.0/mlflow/registered-models/alias?x=1 "
        * 5
        + "\n(Caused by NewConnectionError('Failed to establish a new connection: "
        "[Errno 111] Connection refused'))"
    )

    summary = error_summary(error, with_kind=True)

    assert summary.startswith("ConnectionError: API request to http://***@registry:5000/")
    assert summary.endswith("[Errno 111] Connection refused'))")
    assert " ... " in summary
    assert "\n" not in summary
    assert "Secret" not in summary
    assert len(summary) < 450


def test_an_error_without_a_message_reads_as_its_kind() -> None:
    assert error_summary(OSError()) == "OSError"
