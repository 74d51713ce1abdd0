"""Run with the zenml venv's python: register what a server run needs, print the ids.

A stack whose components are not local (an s3 artifact store, a kubernetes orchestrator
pointing at no cluster, a container registry on a non-localhost URI), a pipeline, a
build with ``is_local=False`` and images, and a snapshot of that build. The ZenML
client talks to the server named by ``ZENML_STORE_URL`` with ``ZENML_STORE_API_TOKEN``.

Usage: ``python register_stack.py NAME ORCHESTRATOR_IMAGE``; prints one JSON object.
"""

from __future__ import annotations

import json
import sys

from zenml.client import Client
from zenml.config.pipeline_configurations import PipelineConfiguration
from zenml.enums import StackComponentType
from zenml.models import (
    BuildItem,
    PipelineBuildRequest,
    PipelineRequest,
    PipelineSnapshotRequest,
)


def main(name: str, image: str) -> None:
    client = Client()
    project = client.active_project
    components = {
        StackComponentType.ARTIFACT_STORE: ("s3", {"path": f"s3://zwmd-test/{name}"}),
        StackComponentType.ORCHESTRATOR: (
            "kubernetes",
            {"kubernetes_context": "zwmd-nowhere", "kubernetes_namespace": "zwmd-test"},
        ),
        StackComponentType.CONTAINER_REGISTRY: ("default", {"uri": "registry.zwmd.test/ml"}),
    }
    component_ids = {}
    for kind, (flavor, config) in components.items():
        component = client.create_stack_component(
            name=f"{name}-{kind.value}", flavor=flavor, component_type=kind, configuration=config
        )
        component_ids[kind] = [component.id]
    stack = client.create_stack(name=name, components=component_ids)
    store = client.zen_store
    pipeline = store.create_pipeline(PipelineRequest(name=f"{name}-pipeline", project=project.id))
    build = store.create_build(
        PipelineBuildRequest(
            project=project.id,
            stack=stack.id,
            pipeline=pipeline.id,
            images={"orchestrator": BuildItem(image=image, contains_code=True)},
            is_local=False,
            contains_code=True,
            zenml_version="0.98.0",
            python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        )
    )
    snapshot = store.create_snapshot(
        PipelineSnapshotRequest(
            project=project.id,
            run_name_template=f"{name}-run-{{date}}-{{time}}",
            pipeline_configuration=PipelineConfiguration(name=f"{name}-pipeline"),
            step_configurations={},
            client_environment={},
            client_version="0.98.0",
            server_version="0.98.0",
            stack=stack.id,
            pipeline=pipeline.id,
            build=build.id,
        )
    )
    print(
        json.dumps(
            {
                "project_id": str(project.id),
                "stack_id": str(stack.id),
                "build_id": str(build.id),
                "snapshot_id": str(snapshot.id),
                "runnable": snapshot.runnable,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
