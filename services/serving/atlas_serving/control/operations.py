"""Endpoint and deployment operations: validation, the deploy-time checks (every bundle loads
and matches the feature lookup) and idempotent writes. Blocking: callers run them in threads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from atlas_core.db import IdempotencyStore
from atlas_core.errors import (
    Aborted,
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from atlas_serving.control.endpoints import (
    EndpointStore,
    resolve_variants,
    validate_capacity,
    validate_capture,
    validate_quality,
    validate_spec,
    validate_variants,
)
from atlas_serving.control.registry import Registry
from atlas_serving.control.rollout import DeploymentStore, new_deployment
from atlas_serving.control.rollout_plan import plan_for
from atlas_serving.dataplane.lookup import check_lookup_schema
from atlas_serving.dataplane.models import ModelCache
from atlas_serving.domain import (
    Deployment,
    DeploymentRequest,
    Endpoint,
    EndpointSpec,
    EndpointState,
    EndpointUpdate,
    FeatureLookup,
    Variant,
    VariantRole,
)
from atlas_serving.monitoring.quality import check_metric


class Control:
    def __init__(
        self,
        registry: Registry,
        endpoints: EndpointStore,
        deployments: DeploymentStore,
        models: ModelCache,
        data_client: Any,
        idempotency: IdempotencyStore,
    ) -> None:
        self.registry = registry
        self.endpoints = endpoints
        self.deployments = deployments
        self.models = models
        self.data_client = data_client
        self.idem = idempotency

    # -- checks before anything serves ---------------------------------------------------

    def prepare(self, variants: Sequence[Variant], lookup: FeatureLookup) -> None:
        """Every bundle loads and verifies, and matches the feature lookup: or the change is
        refused (FAILED_PRECONDITION) and the current version keeps serving."""
        for v in variants:
            version = self.registry.get(v.model.model_name, v.resolved_version)
            try:
                model = self.models.load_now(version)
            except (DataLoss, FailedPrecondition, NotFound) as exc:
                raise FailedPrecondition(
                    f"variant {v.name}: bundle of {v.model.model_name} v{v.resolved_version} "
                    f"cannot be served: {exc.message}",
                    reason="BUNDLE_REJECTED",
                    metadata={"variant": v.name, "cause": exc.reason},
                ) from None
            check_lookup_schema(self.data_client, lookup, model)

    # -- endpoints -----------------------------------------------------------------------

    def create_endpoint(self, spec: EndpointSpec, request_id: str) -> Endpoint:
        validate_spec(spec)
        seen = self.idem.recall("create_endpoint", request_id)
        if seen is not None:
            return self.endpoints.get(seen["name"])
        try:
            self.endpoints.get(spec.name)
            raise AlreadyExists(f"endpoint {spec.name} already exists", reason="ENDPOINT_EXISTS")
        except NotFound:
            pass
        resolved = resolve_variants(self.registry, spec.variants)
        self.prepare(resolved, spec.feature_lookup)
        endpoint = self.endpoints.create(replace(spec, variants=tuple(resolved)))
        self.idem.remember("create_endpoint", request_id, {"name": spec.name})
        return endpoint

    def update_endpoint(self, req: EndpointUpdate) -> Endpoint:
        if req.capacity is not None:
            validate_capacity(req.capacity, "capacity")
        if req.capture is not None:
            validate_capture(req.capture)
        if req.quality is not None:
            validate_quality(req.quality)
        current = self.endpoints.get(req.name)
        if req.feature_lookup is not None:
            self.prepare(current.spec.variants, req.feature_lookup)

        def change(ep: Endpoint) -> None:
            spec = ep.spec
            if req.capacity is not None:
                spec = replace(spec, capacity=req.capacity)
            if req.feature_lookup is not None:
                spec = replace(spec, feature_lookup=req.feature_lookup)
            if req.capture is not None:
                spec = replace(spec, capture=req.capture)
            if req.quality is not None:
                spec = replace(spec, quality=req.quality)
            if req.description:
                spec = replace(spec, description=req.description)
            ep.spec = spec

        return self.endpoints.mutate(req.name, change, etag=req.etag)

    def delete_endpoint(self, name: str, request_id: str) -> Endpoint:
        seen = self.idem.recall("delete_endpoint", request_id)
        if seen is not None:
            return Endpoint(spec=EndpointSpec(name=seen["name"]), state=EndpointState.UNSPECIFIED)
        endpoint = self.endpoints.delete(name)
        self.idem.remember("delete_endpoint", request_id, {"name": name})
        return endpoint

    def served_versions(self, model: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for ep in self.endpoints.list()[0]:
            for v in ep.spec.variants:
                if v.model.model_name == model:
                    out.setdefault(v.resolved_version, []).append(ep.spec.name)
        return out

    def alias_users(self, model: str, alias: str) -> list[str]:
        return sorted(
            {
                ep.spec.name
                for ep in self.endpoints.list()[0]
                for v in ep.spec.variants
                if v.model.model_name == model and v.model.alias == alias
            }
        )

    # -- deployments ---------------------------------------------------------------------

    def submit(self, req: DeploymentRequest, owner: str) -> Deployment:
        seen = self.idem.recall("submit_deployment", req.request_id)
        if seen is not None:
            return self.deployments.get(seen["id"])[0]
        validate_variants(req.variants)
        plan_for(req.policy)  # validates the policy
        if req.alarms.max_error_rate < 0 or req.alarms.max_error_rate > 1:
            raise InvalidArgument(
                "alarms.max_error_rate must be in [0, 1]", reason="INVALID_ALARMS"
            )
        gate = req.alarms.quality_gate
        if gate is not None and (gate.min_labeled < 0 or gate.max_drop < 0):
            raise InvalidArgument(
                "alarms.quality_gate: min_labeled and max_drop must be >= 0",
                reason="INVALID_ALARMS",
            )
        endpoint = self.endpoints.get(req.endpoint_name)
        if endpoint.active_deployment_id:
            raise Aborted(
                f"deployment {endpoint.active_deployment_id} of endpoint "
                f"{req.endpoint_name} is in progress",
                reason="DEPLOYMENT_IN_PROGRESS",
            )
        target = resolve_variants(self.registry, req.variants)
        self._check_quality_judging(req, endpoint, target)
        clash = {v.name for v in endpoint.spec.variants} & {v.name for v in target}
        if clash and req.policy.kind not in ("", "all_at_once"):
            raise InvalidArgument(
                f"variant name(s) {', '.join(sorted(clash))} are already "
                "serving: gradual rollouts need new variant names",
                reason="VARIANT_NAME_IN_USE",
            )
        self.prepare(target, endpoint.spec.feature_lookup)
        if clash:  # all at once onto the same names: the previous variants are replaced
            kept = tuple(v for v in endpoint.spec.variants if v.name not in clash)
            endpoint.spec = replace(endpoint.spec, variants=kept)
        dep, driver = new_deployment(endpoint, target, req.policy, req.alarms, req.request_id)
        self.deployments.insert(dep, driver, owner)

        def claim(ep: Endpoint) -> None:
            if ep.active_deployment_id:
                raise Aborted(
                    f"deployment {ep.active_deployment_id} is in progress",
                    reason="DEPLOYMENT_IN_PROGRESS",
                )
            ep.active_deployment_id = dep.deployment_id
            ep.state = EndpointState.UPDATING

        self.endpoints.mutate(req.endpoint_name, claim, etag=endpoint.etag)
        self.idem.remember("submit_deployment", req.request_id, {"id": dep.deployment_id})
        return dep

    def _check_quality_judging(
        self, req: DeploymentRequest, endpoint: Endpoint, target: Sequence[Variant]
    ) -> None:
        """A rollout judged on ground truth needs recorded predictions and a metric of the
        new model's task: refused at submit time, not discovered by a stuck rollout."""
        gate = req.alarms.quality_gate if req.policy.kind in ("canary", "linear") else None
        if req.policy.kind == "promote_if_better":
            metric = req.policy.metric
        elif gate is not None:
            metric = gate.metric
        else:
            return
        if not endpoint.spec.quality.enabled:
            raise FailedPrecondition(
                f"endpoint {endpoint.spec.name} does not record predictions, so no ground "
                "truth can judge the rollout: enable quality first",
                reason="QUALITY_DISABLED",
            )
        live = [v for v in target if v.role != VariantRole.SHADOW] or list(target)
        for v in live:
            version = self.registry.get(v.model.model_name, v.resolved_version)
            check_metric(version.task_type, metric)

    def cancel(self, deployment_id: str) -> Deployment:
        return self.deployments.request_cancel(deployment_id)

    def rollback(self, endpoint_name: str, request_id: str, owner: str) -> Deployment:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint.active_deployment_id:
            raise Aborted(
                f"deployment {endpoint.active_deployment_id} is in progress; cancel it instead",
                reason="DEPLOYMENT_IN_PROGRESS",
            )
        if not endpoint.last_deployment_id:
            raise FailedPrecondition(
                f"endpoint {endpoint_name} has no previous deployment",
                reason="NO_PREVIOUS_DEPLOYMENT",
            )
        last, _ = self.deployments.get(endpoint.last_deployment_id)
        previous = tuple(last.previous_variants)
        if not previous:
            raise FailedPrecondition(
                "the last deployment has no previous variants", reason="NO_PREVIOUS_DEPLOYMENT"
            )
        return self.submit(
            DeploymentRequest(
                endpoint_name=endpoint_name, variants=previous, request_id=request_id
            ),
            owner,
        )
