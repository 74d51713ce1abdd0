"""The aws plugin is installed as its own distribution and found through its entry point."""

from importlib.metadata import entry_points


def test_entry_point_is_registered() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="zwmd")}
    assert found.get("aws") == "zwmd_aws.plugin"
