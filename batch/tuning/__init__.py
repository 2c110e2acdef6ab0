"""Hyperparameter tuning (docs/tuning.md): an Optuna study per pipeline and date whose objective is the train
step's offline evaluation, parallel fault-tolerant workers, and champion/challenger promotion of a tuned
parameter set that later daily runs apply.

space.py      the search space (pipeline config, defaults per model type)
storage.py    study storage (journal file, PostgreSQL) and the budget lock
objective.py  the objective: the train step's holdout split and evaluate, with per-iteration pruning
workers.py    the worker loop (budget across workers, dead workers' trials failed and retried) and local workers
study.py      the study: settings, prepare (production first), finish (rescore, gate, promote)
promotion.py  the tuned-parameters artifact, its pointer and history, rollback, tuned_overrides
report.py     the Slack summary and the study overview
"""
