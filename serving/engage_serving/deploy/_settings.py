"""Settings of a deployment, read from ``ENGAGE_DEPLOY_*`` variables when a manifest is rendered.

Nothing here imports kserve or kubernetes: invalid settings are refused (pydantic ``ValidationError``)
before the slow SDK import, with a message that names the field and the rule it breaks.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engage import __version__

__all__ = ["DeploySettings", "Toleration", "image_tag", "parse_quantity"]

#: KServe's own rule for InferenceService names (a DNS-1123 label that starts with a letter): the name
#: becomes part of Knative service and host names, which must not start with a digit.
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: DNS-1123 label: namespaces.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: DNS-1123 subdomain: service accounts.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: A model name goes into URL paths (``/v1/models/<name>:predict``): keep it to path-safe characters.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_QUANTITY = re.compile(r"^(?P<number>\d+(?:\.\d+)?|\.\d+)(?P<suffix>[KMGTPE]i|[mkMGTPE])?$")
_QUANTITY_FACTORS = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def image_tag(version: str) -> str:
    """An OCI tag for a Python package version: a local version's ``+`` is not allowed in a tag."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", version)[:128]


def parse_quantity(value: str) -> Decimal:
    """The value of a Kubernetes resource quantity (``500m``, ``2Gi``, ``1.5``); ``ValueError`` if it is
    not one (the subset Engage writes: no exponents, no signs)."""
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (for example 500m, 1, 512Mi, 2Gi)")
    return Decimal(match["number"]) * _QUANTITY_FACTORS[match["suffix"] or ""]


def _default_image(component: str) -> str:
    return f"ghcr.io/engage-ml/engage-{component}:{image_tag(__version__)}"


def _matches(pattern: re.Pattern[str], value: str, what: str) -> str:
    if len(value) > 63 or pattern.match(value) is None:
        raise ValueError(f"{value!r} is not {what}")
    return value


class Toleration(BaseModel):
    """A pod toleration of a node taint (Kubernetes' ``tolerations[]``), e.g. the serving node pool's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    def manifest(self) -> dict[str, str]:
        """The toleration as the pod spec writes it (unset fields left out)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class DeploySettings(BaseSettings):
    """How a model version is served: where, under which name, on which images, with how much traffic.

    Defaults serve the customers models in namespace ``engage`` and send 10 % of traffic to a new
    version (a canary) until it is promoted.
    """

    model_config = SettingsConfigDict(env_prefix="ENGAGE_DEPLOY_", extra="forbid", frozen=True)

    namespace: str = Field(default="engage", description="Kubernetes namespace of the InferenceService")
    name: str = Field(
        default="engage-customers",
        description="InferenceService name: a DNS-1123 label (at most 63 characters, lowercase letters, "
        "digits and '-') that starts with a letter, as KServe requires",
    )
    model_name: str = Field(
        default="engage", description="Model name the servers answer to: /v1/models/<model_name>:predict"
    )
    predictor_image: str = Field(
        default_factory=lambda: _default_image("predictor"),
        description="Image running `python -m engage_serving.predictor` (tagged with the engage version)",
    )
    explainer_image: str = Field(
        default_factory=lambda: _default_image("explainer"),
        description="Image running `python -m engage_serving.explainer` (tagged with the engage version)",
    )
    drift_detector_url: AnyHttpUrl | None = Field(
        default=None,
        description="Where the predictor's InferenceService logger posts requests and responses as "
        "CloudEvents; unset: the drift detector that charts/engage deploys in the same namespace, "
        "http://engage-drift-detector.<namespace>.svc.cluster.local/",
    )
    logger_mode: Literal["all", "request", "response"] = Field(
        default="all", description="What the logger sends to the drift detector"
    )
    canary_traffic_percent: int = Field(
        default=10,
        ge=0,
        le=100,
        description="Share of traffic a new version gets while the previous one keeps the rest; "
        "0 or 100 writes no canary split (the new version takes all traffic once ready)",
    )
    min_replicas: int = Field(
        default=1, ge=0, description="Fewest predictor pods (0 lets Knative scale to zero)"
    )
    max_replicas: int = Field(default=3, ge=1, description="Most predictor pods the autoscaler may run")
    cpu_request: str = Field(default="500m", description="CPU a predictor / explainer pod is scheduled with")
    cpu_limit: str = Field(default="1", description="CPU a predictor / explainer pod may use at most")
    memory_request: str = Field(
        default="1Gi", description="Memory a predictor / explainer pod is scheduled with"
    )
    memory_limit: str = Field(
        default="2Gi", description="Memory above which a predictor / explainer pod is killed"
    )
    deployment_mode: Literal["Standard", "Knative"] | None = Field(
        default=None,
        description="KServe deployment mode (annotation serving.kserve.io/deploymentMode): Standard (plain "
        "Deployments and an HPA; KServe before 0.15 calls it RawDeployment) or Knative (revisions, canary "
        "traffic split, scale to zero); unset: the cluster's default. A canary split needs Knative",
    )
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] | None = Field(
        default=None,
        description="What the autoscaler scales the predictor on (cpu and memory in both modes; concurrency "
        "and rps with Knative); unset: KServe's default",
    )
    scale_target: int | None = Field(
        default=None,
        ge=1,
        description="Target value of scale_metric per pod (a utilisation percent for cpu and memory); "
        "unset: KServe's default",
    )
    tmp_size_limit: str = Field(
        default="512Mi",
        description="Size limit of the emptyDir mounted at /tmp, the only place the servers write (their "
        "root filesystem is read-only)",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels the predictor and explainer pods must land on, as JSON in the variable "
        '(e.g. {"engage.dev/pool": "serving"}: the on-demand serving node group of manifests/eks)',
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Taints the predictor and explainer pods tolerate, as JSON in the variable (e.g. "
        '[{"key": "engage.dev/pool", "value": "serving", "effect": "NoSchedule"}])',
    )
    signing_public_keys_secret: str = Field(
        default="engage-signing-public-keys",
        description="The Secret of trusted Ed25519 public keys (one PEM per entry; during a rotation the new "
        "and the old) mounted read-only in the predictor and the explainer: each loads only a version signed "
        "by one of them (ENGAGE_SIGNING_REQUIRED=true). The chart's signing.publicKeysSecret",
    )
    service_account: str | None = Field(
        default=None,
        description="Service account of the pods; on EKS, one annotated for IRSA lets the storage "
        "initializer read s3:// model files without static keys",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _matches(
            _ISVC_NAME,
            value,
            "a valid InferenceService name: at most 63 lowercase letters, digits or '-', "
            "starting with a letter and ending with a letter or digit",
        )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return _matches(_DNS_LABEL, value, "a DNS-1123 label (at most 63 lowercase letters, digits or '-')")

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or _DNS_SUBDOMAIN.match(value) is None):
            raise ValueError(f"{value!r} is not a valid service account name (a DNS-1123 subdomain)")
        return value

    @field_validator("signing_public_keys_secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        if len(value) > 253 or _DNS_SUBDOMAIN.match(value) is None:
            raise ValueError(f"{value!r} is not a valid Secret name (a DNS-1123 subdomain)")
        return value

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return _matches(_MODEL_NAME, value, "a model name (letters, digits, '_', '.', '-'; at most 63)")

    @field_validator("predictor_image", "explainer_image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an image reference")
        return value

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit", "tmp_size_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        parse_quantity(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeploySettings:
        """Bounds that involve two fields: the API server would refuse them only at apply time."""
        if self.scale_target is not None and self.scale_metric is None:
            raise ValueError("scale_target needs scale_metric (what the target is a value of)")
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        for resource in ("cpu", "memory"):
            request, limit = getattr(self, f"{resource}_request"), getattr(self, f"{resource}_limit")
            if parse_quantity(request) > parse_quantity(limit):
                raise ValueError(f"{resource}_request ({request}) exceeds {resource}_limit ({limit})")
        return self

    @property
    def logger_url(self) -> str:
        """Where the logger posts: ``drift_detector_url``, or the namespace's own drift detector."""
        if self.drift_detector_url is not None:
            return str(self.drift_detector_url)
        return f"http://engage-drift-detector.{self.namespace}.svc.cluster.local/"

    @property
    def canary_split(self) -> int | None:
        """``canaryTrafficPercent`` to write, or None when there is no split (0 or 100)."""
        return None if self.canary_traffic_percent in (0, 100) else self.canary_traffic_percent
