"""Experiment framework: train and score methodologies over a repository of datasets."""
