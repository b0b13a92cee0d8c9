"""Deployment assets for TDN: cluster image, AWS Ray launcher config, KubeRay/MLflow manifests, local cluster.

Python entry points: `python -m infra.local up|down|env` (a one-machine cluster for development and tests) and
`python -m infra.render` (fills the `${TDN_...}` placeholders of the cloud templates).
"""
