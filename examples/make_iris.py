#!/usr/bin/env python3
"""Writes a scikit-learn iris classifier (model.joblib) to the directory given, with the
MLServer version installed next to this interpreter so the pickle always matches."""
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(X, y), sys.argv[1] + "/model.joblib")
