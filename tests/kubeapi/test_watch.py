"""WATCH: initial state, resumption from a resourceVersion, timeouts, bookmarks, selectors."""

from __future__ import annotations

import time

import pytest

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer

from .helpers import FINALIZER, HTTP, PVMS_URL, summary, vm

pytestmark = pytest.mark.usefixtures("crd")
ALL_PVMS_URL = "/apis/proxmox.vmop.dev/v1alpha1/proxmoxvms"


def test_watch_streams_json_with_the_current_state_first(http: HTTP) -> None:
    http.post(PVMS_URL, vm("a"))
    with http.watch(PVMS_URL) as watch:
        assert watch.response.headers["Content-Type"] == "application/json"
        assert summary(watch.next()) == [("ADDED", "a")]
        http.post(PVMS_URL, vm("b"))
        http.patch(f"{PVMS_URL}/a", {"spec": {"cores": 3}})
        http.delete(f"{PVMS_URL}/b")
        events = watch.next(3)
    assert summary(events) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert events[1]["object"]["spec"]["cores"] == 3


def test_watch_resumes_from_a_resource_version_without_re_adding(http: HTTP) -> None:
    http.post(PVMS_URL, vm("a"))
    listed = http.get(PVMS_URL).json()["metadata"]["resourceVersion"]
    http.patch(f"{PVMS_URL}/a", {"spec": {"cores": 3}})
    http.post(PVMS_URL, vm("b"))
    with http.watch(PVMS_URL, resourceVersion=listed) as watch:
        assert summary(watch.next(2)) == [("MODIFIED", "a"), ("ADDED", "b")]


def test_watch_ends_after_timeout_seconds(http: HTTP) -> None:
    started = time.monotonic()
    with http.watch(PVMS_URL, timeoutSeconds=1) as watch:
        assert watch.rest() == []
    assert 0.9 < time.monotonic() - started < 3


def test_bookmarks_carry_the_latest_resource_version(http: HTTP) -> None:
    http.post(PVMS_URL, vm("a"))
    with http.watch(PVMS_URL, allowWatchBookmarks="true", timeoutSeconds=1) as watch:
        events = watch.rest()
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert summary(events)[0] == ("ADDED", "a") and len(bookmarks) >= 2  # each 0.2s, and at the end
    assert bookmarks[-1]["object"] == {
        "apiVersion": "proxmox.vmop.dev/v1alpha1", "kind": "ProxmoxVM",
        "metadata": {"resourceVersion": http.get(PVMS_URL).json()["metadata"]["resourceVersion"]},
    }  # fmt: skip


def test_send_initial_events_ends_with_a_marked_bookmark(http: HTTP) -> None:
    http.post(PVMS_URL, vm("a"))
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    with http.watch(PVMS_URL, **params) as watch:
        added, bookmark = watch.next(2)
    assert summary([added]) == [("ADDED", "a")]
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_filters_by_the_namespace_in_the_url(http: HTTP) -> None:
    http.post("/api/v1/namespaces", {"metadata": {"name": "lab"}})
    with http.watch(PVMS_URL) as in_default, http.watch(ALL_PVMS_URL) as everywhere:
        http.post(PVMS_URL.replace("/default/", "/lab/"), {"metadata": {"name": "elsewhere"}})
        http.post(PVMS_URL, {"metadata": {"name": "here"}})  # no namespace in the body
        http.delete(f"{PVMS_URL}/here")
        assert summary(in_default.next(2)) == [("ADDED", "here"), ("DELETED", "here")]
        assert summary(everywhere.next(3)) == [
            ("ADDED", "elsewhere"),
            ("ADDED", "here"),
            ("DELETED", "here"),
        ]


def test_watch_with_selectors_sees_objects_enter_and_leave(http: HTTP) -> None:
    http.post(PVMS_URL, vm("a"))
    http.post(PVMS_URL, vm("b", labels={"tier": "front"}))
    with (
        http.watch(PVMS_URL, labelSelector="tier=front") as by_label,
        http.watch(PVMS_URL, fieldSelector="metadata.name=a") as by_name,
    ):
        assert summary(by_label.next()) == [("ADDED", "b")]
        assert summary(by_name.next()) == [("ADDED", "a")]
        http.patch(f"{PVMS_URL}/a", {"metadata": {"labels": {"tier": "front"}}})
        http.patch(f"{PVMS_URL}/b", {"metadata": {"labels": {"tier": "back"}}})
        assert summary(by_label.next(2)) == [("ADDED", "a"), ("DELETED", "b")]
        assert summary(by_name.next()) == [("MODIFIED", "a")]


def test_watch_of_a_deletion_with_finalizers(http: HTTP) -> None:
    http.post(PVMS_URL, vm("a", finalizers=[FINALIZER]))
    with http.watch(PVMS_URL, fieldSelector="metadata.name=a") as watch:
        watch.next()
        http.delete(f"{PVMS_URL}/a")
        http.patch(f"{PVMS_URL}/a", {"metadata": {"finalizers": None}})
        modified, deleted = watch.next(2)
    assert modified["type"] == "MODIFIED" and modified["object"]["metadata"]["deletionTimestamp"]
    assert deleted["type"] == "DELETED"
    assert int(deleted["object"]["metadata"]["resourceVersion"]) > int(
        modified["object"]["metadata"]["resourceVersion"]
    )


def test_too_old_resource_version_is_410_expired() -> None:
    with KubeAPIServer(event_log_size=3) as small:
        small_http = HTTP(small.url)
        small_http.post("/api/v1/namespaces", {"metadata": {"name": "lab"}})
        with small_http.watch("/api/v1/namespaces", resourceVersion="1") as watch:
            [error] = watch.rest()
    assert error["type"] == "ERROR"
    assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")


def test_watches_end_when_the_server_stops(server: KubeAPIServer, http: HTTP) -> None:
    with http.watch(PVMS_URL, timeoutSeconds=60) as watch:
        server.stop()
        assert watch.rest() == []
