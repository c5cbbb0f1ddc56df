"""Platforms realise a SeldonDeployment: on Kubernetes, or as local processes."""
