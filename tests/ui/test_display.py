"""What pages show is derived from client JSON of any shape, and login throttling."""

from __future__ import annotations

import json

from registryd.ui import display


def test_config_fields_of_the_wrong_type_are_left_out() -> None:
    data = json.dumps(
        {
            "architecture": 7,
            "os": "linux",
            "config": {
                "Env": "PATH=/bin",  # a string, not a list
                "Labels": ["not", "a", "map"],
                "ExposedPorts": None,
                "Entrypoint": ["/bin/app", 1],
                "Cmd": {"x": 1},
            },
            "history": ["not an object", {"created_by": ["x"], "empty_layer": "yes"}],
        }
    ).encode()
    config = display.image_config(display.loads_object(data))
    assert config.platform == "linux"
    assert config.env == []
    assert config.labels == []
    assert config.exposed_ports == []
    assert config.entrypoint == ["/bin/app", "1"]
    assert config.cmd == []
    assert [h.created_by for h in config.history] == [None, None]
    assert not any(h.empty_layer for h in config.history)


def test_unparseable_bodies_show_nothing() -> None:
    for body in (b"", b"[1, 2]", b"\xff\xfe", b"{", b"null"):
        assert display.loads_object(body) == {}
    assert display.index_platforms({"manifests": [{"digest": 5}, "x", {}]}) == []


def test_v1_image_json_uses_container_config_when_config_is_absent() -> None:
    config = display.image_config({"container_config": {"Cmd": ["/bin/sh"]}})
    assert config.cmd == ["/bin/sh"]


def test_sizes_and_digests_read_well() -> None:
    assert display.human_size(None) == "—"
    assert display.human_size(0) == "0 B"
    assert display.human_size(1023) == "1023 B"
    assert display.human_size(1536) == "1.5 KiB"
    assert display.human_size(5 * 1024**3) == "5.0 GiB"
    assert display.short_digest("sha256:" + "ab" * 32) == "sha256:" + "ab" * 6
    assert display.path_part("alice/app") == "alice/app"
    assert display.path_part('a"b<c>') == "a%22b%3Cc%3E"


def test_pull_commands_for_v1_name_only_docker() -> None:
    v2 = display.pull_commands("r.example:5000", "alice/app", "v1", plain_http=False, v2=True)
    assert [c.client for c in v2] == ["docker", "podman", "skopeo", "ctr"]
    assert v2[1].command == "podman pull r.example:5000/alice/app:v1"
    by_digest = display.pull_commands("h", "app", "sha256:" + "0" * 64, plain_http=True, v2=True)
    assert by_digest[0].command == "docker pull h/app@sha256:" + "0" * 64
    assert "--plain-http" in by_digest[3].command
    v1 = display.pull_commands("h", "alice/old", "latest", plain_http=True, v2=False)
    assert [c.client for c in v1] == ["docker"]
