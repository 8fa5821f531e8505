"""Distributed GNN training on DGL: models, the server/trainer process entry point
(:mod:`~atlas_graph.training.worker`) and the local cluster that runs them
(:mod:`~atlas_graph.training.cluster`)."""
