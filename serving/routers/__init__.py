"""One router per resource: scores, the model, health, metrics, admin and the API document."""
