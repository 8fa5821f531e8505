"""The serving service: a model registry, endpoints served by every replica, gradual rollouts
with alarms, and monitoring (capture, drift, alerts).

Layout (like the data, trainer and graph services): ``__main__`` starts the process,
``runtime`` opens what it runs on, ``service`` is the facade without grpc, ``servicer`` the
gRPC front end (translation only) and ``convert`` the one proto <-> domain bridge, over the
domain objects of ``domain``. Domain code lives in ``control`` (registry, endpoints,
deployments), ``dataplane`` (the prediction path of one replica) and ``monitoring``
(statistics, metrics, alerts, the drift job and its schedule).
"""
