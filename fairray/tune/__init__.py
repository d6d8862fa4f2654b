"""Ray Tune campaigns over YAML search spaces (tune_spaces/*.yaml), tracked as MLflow parent + child runs.

spaces.py: the space format and its validation (before any trial starts); trainables.py: the registry of what a
campaign can tune; campaign.py: Tuner / restore, dataset preparation, MLflow parent run and reconciliation.
"""
