"""The shared core: the data contract, loading, point-in-time features and labels."""
