"""Kubernetes actuator: calls checked on an injected fake client, and on the real client against a local fake API."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, urlparse

import pytest

from ftops.actions.actuators import ActuatorError
from ftops.actions.actuators_kubernetes import KubernetesActuator, delete_options

from .test_actuators import planned


class NotFound(Exception):
    status = 404


class FakeBatchApi:
    """The three BatchV1Api methods the actuator uses, recording every call."""

    def __init__(self, jobs: dict[str, list[str]], delete_error: Exception | None = None):
        self.jobs = jobs  # label selector -> Job names
        self.delete_error = delete_error
        self.calls: list[tuple[str, tuple, dict]] = []

    def list_namespaced_job(self, namespace, **kwargs):
        self.calls.append(("list", (namespace,), kwargs))
        names = self.jobs.get(kwargs["label_selector"], [])
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in names])

    def delete_namespaced_job(self, name, namespace, **kwargs):
        self.calls.append(("delete", (name, namespace), kwargs))
        if self.delete_error is not None:
            raise self.delete_error

    def patch_namespaced_job(self, name, namespace, body, **kwargs):
        self.calls.append(("patch", (name, namespace, body), kwargs))


def _body_propagation(body) -> str:
    return body["propagationPolicy"] if isinstance(body, dict) else body.propagation_policy


def test_terminate_deletes_the_labelled_job_in_background():
    api = FakeBatchApi({"ftops/job-id=ft-1": ["train-ft-1"]})
    action = planned(action="terminate", params={"reason": "budget_exceeded"})
    detail = KubernetesActuator("ml", client=api).apply(action)
    assert detail == "deleted Job ml/train-ft-1 (propagation Background)"
    (kind, args, kwargs), (dkind, dargs, dkwargs) = api.calls
    assert (kind, args, kwargs["label_selector"]) == ("list", ("ml",), "ftops/job-id=ft-1")
    assert (dkind, dargs) == ("delete", ("train-ft-1", "ml"))
    assert dkwargs["propagation_policy"] == "Background"
    assert _body_propagation(dkwargs["body"]) == "Background"
    assert dkwargs["_request_timeout"] == 30.0


def test_terminate_can_suspend_instead():
    api = FakeBatchApi({"team/run=ft-1": ["a", "b"]})
    actuator = KubernetesActuator("ml", label_key="team/run", client=api, terminate_mode="suspend")
    action = planned(action="terminate", params={"reason": "budget_exceeded"})
    assert actuator.apply(action) == "suspended Job ml/a; suspended Job ml/b"
    patches = [c for c in api.calls if c[0] == "patch"]
    assert [p[1][:2] for p in patches] == [("a", "ml"), ("b", "ml")]
    body = patches[0][1][2]
    assert body["spec"] == {"suspend": True}
    assert body["metadata"]["annotations"]["ftops/action-id"] == action.action_id
    assert patches[0][2]["_content_type"] == "application/merge-patch+json"
    assert not [c for c in api.calls if c[0] == "delete"]


def test_terminating_a_job_that_is_gone_counts_as_done():
    # a re-run after a crash that followed the delete finds no Job (or a 404 in a race)
    assert "nothing left to terminate" in KubernetesActuator("ml", client=FakeBatchApi({})).apply(
        planned(action="terminate", params={}))
    api = FakeBatchApi({"ftops/job-id=ft-1": ["train-ft-1"]}, delete_error=NotFound("gone"))
    assert KubernetesActuator("ml", client=api).apply(planned(action="terminate", params={})) == \
        "Job ml/train-ft-1 already deleted"


def test_other_delete_errors_fail_the_action():
    error = Exception("forbidden")
    error.status = 403
    api = FakeBatchApi({"ftops/job-id=ft-1": ["j"]}, delete_error=error)
    with pytest.raises(ActuatorError, match="cannot delete Job ml/j: forbidden"):
        KubernetesActuator("ml", client=api).apply(planned(action="terminate", params={}))


@pytest.mark.parametrize("action, params", [("switch_to_spot", {"pricing": "spot"}),
                                            ("reduce_batch_size", {"micro_batch_size": 2, "grad_accum": 4})])
def test_spot_and_batch_requests_are_annotations_for_an_operator(action, params):
    api = FakeBatchApi({"ftops/job-id=ft-1": ["train-ft-1"]})
    step = planned(action=action, params=params)
    detail = KubernetesActuator("ml", client=api).apply(step)
    assert detail == f"annotated ftops/requested-action={action} on Job ml/train-ft-1"
    [(_, (name, namespace, body), kwargs)] = [c for c in api.calls if c[0] == "patch"]
    annotations = body["metadata"]["annotations"]
    assert (name, namespace, "spec" in body) == ("train-ft-1", "ml", False)
    assert annotations["ftops/requested-action"] == action
    assert annotations["ftops/action-id"] == step.action_id
    command = json.loads(annotations[f"ftops/{action.replace('_', '-')}"])
    assert {k: command[k] for k in params} == params
    assert kwargs["_content_type"] == "application/merge-patch+json"


def test_patch_without_a_job_fails_and_bad_label_values_are_refused():
    with pytest.raises(ActuatorError, match="no Job labelled ftops/job-id=ft-1 in namespace ml"):
        KubernetesActuator("ml", client=FakeBatchApi({})).apply(planned(action="switch_to_spot", params={}))
    with pytest.raises(ActuatorError, match="not a valid Kubernetes label value"):
        KubernetesActuator("ml", client=FakeBatchApi({})).apply(planned(job_id="a b", action="terminate", params={}))
    with pytest.raises(ValueError):
        KubernetesActuator("ml", terminate_mode="kill")


def test_missing_client_library_gives_a_clear_error(monkeypatch):
    for name in ("kubernetes", "kubernetes.client"):
        monkeypatch.setitem(sys.modules, name, None)  # import -> ImportError, as when not installed
    with pytest.raises(ActuatorError, match=r"pip install 'ftops\[kubernetes\]'"):
        KubernetesActuator("ml", in_cluster=False).apply(planned(action="terminate", params={}))
    assert delete_options()["propagationPolicy"] == "Background"


# --- the real client ----------------------------------------------------------------------------


class _FakeApiServer:
    """Answers the three batch/v1 Job calls the way an API server does; keeps every request."""

    def __init__(self):
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, document):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                server.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                        "content_type": self.headers.get("Content-Type"),
                                        "body": json.loads(body) if body else None})
                data = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._answer({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                              "items": [{"metadata": {"name": "train-ft-1", "namespace": "ml"}}]})

            def do_DELETE(self):  # noqa: N802
                self._answer({"kind": "Status", "apiVersion": "v1", "status": "Success"})

            def do_PATCH(self):  # noqa: N802
                self._answer({"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "train-ft-1"}})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_server():
    server = _FakeApiServer()
    yield server
    server.close()


def test_real_client_objects_are_built_correctly():
    kubernetes = pytest.importorskip("kubernetes")
    options = delete_options("Background")
    assert isinstance(options, kubernetes.client.V1DeleteOptions)
    serialized = kubernetes.client.ApiClient().sanitize_for_serialization(options)
    assert serialized == {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}


def test_real_client_sends_the_right_requests(api_server, tmp_path):
    pytest.importorskip("kubernetes")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": api_server.url}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
    }))
    actuator = KubernetesActuator("ml", kubeconfig=str(kubeconfig), in_cluster=False, request_timeout_seconds=10)
    assert actuator.apply(planned(action="terminate", params={})).startswith("deleted Job ml/train-ft-1")
    assert actuator.apply(planned(action="switch_to_spot", params={"pricing": "spot"})).startswith("annotated")

    listing, delete, _, patch = api_server.requests
    assert (listing["method"], listing["path"]) == ("GET", "/apis/batch/v1/namespaces/ml/jobs")
    assert listing["query"]["labelSelector"] == ["ftops/job-id=ft-1"]
    assert (delete["method"], delete["path"]) == ("DELETE", "/apis/batch/v1/namespaces/ml/jobs/train-ft-1")
    assert delete["query"]["propagationPolicy"] == ["Background"]
    assert delete["body"]["propagationPolicy"] == "Background"
    assert (patch["method"], patch["path"]) == ("PATCH", "/apis/batch/v1/namespaces/ml/jobs/train-ft-1")
    assert patch["content_type"] == "application/merge-patch+json"
    assert patch["body"]["metadata"]["annotations"]["ftops/requested-action"] == "switch_to_spot"
