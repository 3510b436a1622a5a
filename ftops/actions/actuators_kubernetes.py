"""Kubernetes actuator: acts on the batch/v1 Job that runs a fine-tuning job (optional extra).

The Job is found by label (`ftops/job-id=<job_id>` by default) in one namespace.
- terminate: delete the Job with propagation Background (its pods go too), or, with
  `terminate_mode="suspend"`, patch `spec.suspend: true` (pods stop, the Job object and its
  history stay, and un-suspending resumes it).
- switch_to_spot, reduce_batch_size: a Job's pod template is immutable, so ftops cannot change
  them itself; it annotates the Job (`ftops/requested-action`, `ftops/action-id`, and one
  `ftops/<action>` annotation holding the command JSON) for an operator or controller to act on.
- recovery (resume_smaller_batch, resume, rollback, restart, reschedule, notify_owner): annotated
  the same way. Restarting means a new pod from a changed template (smaller batch, on demand, other
  nodes, a checkpoint to start from) and ftops holds no template, so the operator or controller that
  created the Job re-creates it from the annotation; deleting pods instead would restart them with
  the old settings, the very ones that failed. A failed Job is kept by Kubernetes, so it can be
  annotated; a Job already deleted cannot, and the action fails (ActuatorError) so it is alerted.
- launch_calibration: refused (ActuatorError): a new Job needs a template ftops does not hold.

Idempotent per action: patches can be repeated, and a Job already deleted counts as terminated
(after a crash between the delete and the ledger update the Job is simply gone).

The `kubernetes` package is imported only when no client is injected: `pip install 'ftops[kubernetes]'`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from ftops.actions.actuators import LAUNCH_ACTIONS, ActuatorError, command_payload
from ftops.plans import PlannedAction

TerminateMode = Literal["delete", "suspend"]
REQUESTED_ACTION = "ftops/requested-action"
ACTION_ID = "ftops/action-id"
# the Kubernetes client picks json-patch for a dict body unless told; the API server refuses that
_MERGE_PATCH = "application/merge-patch+json"
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError as exc:
        raise ActuatorError(
            "the kubernetes actuator needs the official client: pip install 'ftops[kubernetes]'"
        ) from exc
    return kubernetes


def delete_options(propagation_policy: str = "Background") -> Any:
    """A V1DeleteOptions when the client is installed, else the same body as a plain dict."""
    try:
        from kubernetes.client import V1DeleteOptions
    except ImportError:
        return {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation_policy}
    return V1DeleteOptions(api_version="v1", kind="DeleteOptions", propagation_policy=propagation_policy)


def batch_api(kubeconfig: str | None = None, context: str | None = None, in_cluster: bool | None = None) -> Any:
    """A BatchV1Api on its own ApiClient (the global default configuration is left alone).

    in_cluster None: the pod's service account when running in a cluster, else the kubeconfig.
    """
    k8s = _kubernetes()
    if in_cluster is not False:
        try:
            configuration = k8s.client.Configuration()
            k8s.config.load_incluster_config(client_configuration=configuration)
            return k8s.client.BatchV1Api(k8s.client.ApiClient(configuration))
        except k8s.config.ConfigException:
            if in_cluster:
                raise
    return k8s.client.BatchV1Api(k8s.config.new_client_from_config(config_file=kubeconfig, context=context))


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


class KubernetesActuator:
    """Deletes, suspends or annotates the Job labelled with the ftops job id.

    client: a `kubernetes.client.BatchV1Api` (or anything with its list/delete/patch methods);
    when None one is built from `kubeconfig`/`context`/`in_cluster` on first use.
    """

    name = "kubernetes"

    def __init__(
        self,
        namespace: str,
        label_key: str = "ftops/job-id",
        client: Any | None = None,
        terminate_mode: TerminateMode = "delete",
        request_timeout_seconds: float = 30.0,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | None = None,
    ) -> None:
        if terminate_mode not in ("delete", "suspend"):
            raise ValueError(f"terminate_mode must be 'delete' or 'suspend', not {terminate_mode!r}")
        self.namespace = namespace
        self.label_key = label_key
        self.terminate_mode = terminate_mode
        self.request_timeout_seconds = request_timeout_seconds
        self._client = client
        self._connect = (kubeconfig, context, in_cluster)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = batch_api(*self._connect)
        return self._client

    def apply(self, action: PlannedAction) -> str:
        if action.action in LAUNCH_ACTIONS:
            # a new Job needs a pod template (image, command, resources) that ftops does not hold
            raise ActuatorError(
                f"kubernetes cannot launch a new job: {action.action} for {action.job_id} needs a Job template "
                "ftops does not have: use the webhook actuator and let the scheduler create the Job")
        names = self._job_names(action.job_id)
        if action.action == "terminate":
            if not names:
                # Deleted already (possibly by this action before a crash): the goal holds.
                return f"no Job labelled {self._selector(action.job_id)} in {self.namespace}; nothing left to terminate"
            if self.terminate_mode == "delete":
                return "; ".join(self._delete(name) for name in names)
            return "; ".join(self._patch(name, self._annotations(action), suspend=True) for name in names)
        if not names:
            raise ActuatorError(f"no Job labelled {self._selector(action.job_id)} in namespace {self.namespace}")
        return "; ".join(self._patch(name, self._annotations(action)) for name in names)

    def _selector(self, job_id: str) -> str:
        if not _LABEL_VALUE.match(job_id) or len(job_id) > 63:
            raise ActuatorError(f"job id {job_id!r} is not a valid Kubernetes label value")
        return f"{self.label_key}={job_id}"

    def _job_names(self, job_id: str) -> list[str]:
        selector = self._selector(job_id)
        try:
            jobs = self.client.list_namespaced_job(self.namespace, label_selector=selector,
                                                   _request_timeout=self.request_timeout_seconds)
        except ActuatorError:
            raise
        except Exception as exc:  # the client raises ApiException, urllib3 errors, config errors
            raise ActuatorError(f"cannot list Jobs {selector} in {self.namespace}: {exc}") from exc
        return sorted(item.metadata.name for item in (jobs.items or []))

    def _delete(self, name: str) -> str:
        try:
            self.client.delete_namespaced_job(name, self.namespace, body=delete_options("Background"),
                                              propagation_policy="Background",
                                              _request_timeout=self.request_timeout_seconds)
        except Exception as exc:
            if _status(exc) == 404:
                return f"Job {self.namespace}/{name} already deleted"
            raise ActuatorError(f"cannot delete Job {self.namespace}/{name}: {exc}") from exc
        return f"deleted Job {self.namespace}/{name} (propagation Background)"

    def _annotations(self, action: PlannedAction) -> dict[str, str]:
        command = json.dumps(command_payload(action), sort_keys=True, allow_nan=False)
        return {REQUESTED_ACTION: action.action, ACTION_ID: action.action_id,
                f"ftops/{action.action.replace('_', '-')}": command}

    def _patch(self, name: str, annotations: dict[str, str], suspend: bool = False) -> str:
        body: dict[str, Any] = {"metadata": {"annotations": annotations}}
        if suspend:
            body["spec"] = {"suspend": True}
        try:
            self.client.patch_namespaced_job(name, self.namespace, body, _content_type=_MERGE_PATCH,
                                             _request_timeout=self.request_timeout_seconds)
        except Exception as exc:
            raise ActuatorError(f"cannot patch Job {self.namespace}/{name}: {exc}") from exc
        what = "suspended" if suspend else f"annotated {REQUESTED_ACTION}={annotations[REQUESTED_ACTION]} on"
        return f"{what} Job {self.namespace}/{name}"
