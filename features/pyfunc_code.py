"""The models-from-code script MLflow stores with the pyfunc and runs when loading it.

MLflow executes this file; it names the model object and nothing else. The learned model is
read from the logged artifacts in ``ReconversionPyfunc.load_context``.
"""

import mlflow.models

from features.pyfunc import ReconversionPyfunc

mlflow.models.set_model(ReconversionPyfunc())
