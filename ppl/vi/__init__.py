"""Programmable variational inference: objectives as programs, gradient estimators by transformation."""
