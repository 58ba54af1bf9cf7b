"""Predict interventional distributions for a user's own observational table (no Ray).

    from activa_ray.predict import load
    predictor = load()                  # the shipped universal model; or load("gauss8"), load("runs/x/export")
    prediction = predictor.predict(frame, target="gene_3", value=5.0)
    prediction.sample(1000, seed=0)     # DataFrame with the table's columns
    prediction.effects()                # per variable: shift of the mean, interval, P(no effect)

tables.py checks the input table, predictor.py loads the model and answers queries (chunking tables
longer than the trained N), domain.py warns when the table's d, N, scale or value lie outside what the
model was trained on, prediction.py holds one answer,
effects.py the effect maths, plots.py the marginal plot, outputs.py the files jobs/predict.py writes.
"""

from activa_ray.predict.effects import hellinger_gaussian
from activa_ray.predict.outputs import predict_to_folder
from activa_ray.predict.prediction import Prediction
from activa_ray.predict.predictor import Predictor, load
from activa_ray.predict.tables import PredictError, as_table, read_table

__all__ = [
    "PredictError",
    "Prediction",
    "Predictor",
    "as_table",
    "hellinger_gaussian",
    "load",
    "predict_to_folder",
    "read_table",
]
