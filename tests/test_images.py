"""Image building for the containers runtime: the apt mirror is read from the machine's
sources, tags follow the inputs, and a second build is a lookup (real Docker, real build)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from harness.runtime import docker_env, images


def test_apt_mirror_from_deb822_sources(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert images.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_apt_mirror_from_one_line_list_and_default(tmp_path):
    assert images.apt_mirror(tmp_path) == images.DEFAULT_MIRROR
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert images.apt_mirror(tmp_path) == "http://old.example/debian"


def test_digest_depends_on_every_part_and_their_boundaries():
    assert images.digest("a", "b") == images.digest("a", "b")
    assert images.digest("a", "b") != images.digest("ab")
    assert images.digest("a", b"b") != images.digest("a", b"c")


needs_docker = pytest.mark.skipif(not docker_env.available() and not os.environ.get("CI"),
                                  reason="no Docker daemon answers")


@needs_docker
@pytest.mark.integration
def test_second_build_is_a_lookup_and_inputs_change_the_tag(tmp_path, monkeypatch):
    client = docker_env.client()
    logs: list[str] = []
    tag = images.build(client, log=logs.append)
    image_id = client.images.get(tag).id
    logs.clear()
    start = time.monotonic()
    assert images.build(client, log=logs.append) == tag
    assert time.monotonic() - start < 30  # no debootstrap, no docker build
    assert any("up to date" in line for line in logs), logs
    assert client.images.get(tag).id == image_id
    # Another Dockerfile is another image.
    changed = tmp_path / "node"
    shutil.copytree(images.DOCKERFILE_DIR, changed)
    (changed / "Dockerfile").write_text((changed / "Dockerfile").read_text() + "# changed\n")
    base = images.resolve_base(client, None, False, logs.append)
    before = images.node_tag(client, base)
    monkeypatch.setattr(images, "DOCKERFILE_DIR", changed)
    assert images.node_tag(client, base) != before
    client.close()
