"""The ``srl`` command line: one console script over the features, training and serving jobs."""
