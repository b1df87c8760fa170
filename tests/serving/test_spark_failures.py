"""What a failed Spark job's summary says: the file it could not read and why, no value."""

from __future__ import annotations

from serving.spark import unreadable_file

FAILED_READ = (
    "An error occurred while calling o299.collectToPython.\n"
    ": org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while "
    "reading file file:///exports/2026-12/activities.parquet.  SQLSTATE: KD001\n"
    "\tat org.apache.spark.sql.errors.QueryExecutionErrors$.cannotReadFilesError(x.scala:9)\n"
)


def test_a_damaged_page_is_named_with_its_file_and_parquet_s_reason() -> None:
    trace = FAILED_READ + (
        "Caused by: org.apache.parquet.io.ParquetDecodingException: could not verify page "
        "integrity, CRC checksum verification failed\n\tat org.apache.parquet.X(X.java:1)\n"
    )

    assert unreadable_file(trace) == (
        "Spark could not read file:///exports/2026-12/activities.parquet "
        "(ParquetDecodingException: could not verify page integrity, CRC checksum "
        "verification failed)"
    )


def test_a_cause_outside_parquet_is_named_by_its_class_only() -> None:
    trace = FAILED_READ + (
        "Caused by: java.lang.RuntimeException: wrapped\n"
        'Caused by: java.lang.NumberFormatException: For input string: "jane@example.com"\n'
    )

    message = unreadable_file(trace)

    assert message == (
        "Spark could not read file:///exports/2026-12/activities.parquet (NumberFormatException)"
    )


def test_a_trace_that_names_no_file_is_left_to_its_first_line() -> None:
    assert unreadable_file("An error occurred while calling o1.collect.\n: boom") is None
