"""OpenLineage events: what a step read (with its content hash), what it checked and did, what it wrote.

Events are built with the ``openlineage-python`` client's types and written as JSON lines, one event a
line, so any OpenLineage consumer (Marquez, a KFP sidecar, a file collector) can ingest them. A run
emits START then COMPLETE (or FAIL). Datasets are files: namespace ``file``, name the absolute path, the
SHA-256 of the content as the dataset version.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["NAMESPACE", "LineageRun"]

NAMESPACE = "engage"
PRODUCER = "https://github.com/engage-mlops/engage"


@dataclass
class LineageRun:
    """Collects the inputs, outputs and facets of one run of a step, then renders its events."""

    job: str
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    inputs: list[Any] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    run_facets: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _dataset_facets(sha256: str, columns: list[tuple[str, str]] | None) -> dict[str, Any]:
        from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
        from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields

        facets: dict[str, Any] = {"version": DatasetVersionDatasetFacet(datasetVersion=f"sha256:{sha256}")}
        if columns:
            facets["schema"] = SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(name=n, type=t) for n, t in columns]
            )
        return facets

    def add_input(
        self,
        path: Path,
        sha256: str,
        *,
        columns: list[tuple[str, str]] | None = None,
        assertions: list[dict[str, Any]] | None = None,
        rows: int | None = None,
    ) -> None:
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.generated.data_quality_assertions_dataset import (
            Assertion,
            DataQualityAssertionsDatasetFacet,
        )
        from openlineage.client.generated.data_quality_metrics_input_dataset import (
            DataQualityMetricsInputDatasetFacet,
        )

        input_facets: dict[str, Any] = {}
        if assertions is not None:
            input_facets["dataQualityAssertions"] = DataQualityAssertionsDatasetFacet(
                assertions=[Assertion(**a) for a in assertions]
            )
        if rows is not None:
            input_facets["dataQualityMetrics"] = DataQualityMetricsInputDatasetFacet(
                columnMetrics={}, rowCount=rows
            )
        self.inputs.append(
            InputDataset(
                namespace="file",
                name=str(path.resolve()),
                facets=self._dataset_facets(sha256, columns),
                inputFacets=input_facets,
            )
        )

    def add_output(self, path: Path, sha256: str, *, rows: int | None = None) -> None:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.generated.output_statistics_output_dataset import (
            OutputStatisticsOutputDatasetFacet,
        )

        output_facets: dict[str, Any] = {}
        if rows is not None:
            output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=rows)
        # the final path: outputs are staged and moved into place only when the whole run succeeds
        self.outputs.append(
            OutputDataset(
                namespace="file",
                name=str(path),
                facets=self._dataset_facets(sha256, None),
                outputFacets=output_facets,
            )
        )

    def events(self, *, failed: str | None = None) -> list[str]:
        """START and COMPLETE (or FAIL with the error message) as JSON strings."""
        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
        from openlineage.client.serde import Serde

        def event(state: Any, when: datetime, facets: dict[str, Any], with_io: bool) -> str:
            return str(
                Serde.to_json(
                    RunEvent(
                        eventType=state,
                        eventTime=when.isoformat(),
                        run=Run(runId=self.run_id, facets=facets),
                        job=Job(namespace=NAMESPACE, name=self.job),
                        inputs=self.inputs if with_io else [],
                        outputs=self.outputs if with_io and failed is None else [],
                        producer=PRODUCER,
                    )
                )
            )

        end_facets = dict(self.run_facets)
        if failed is not None:
            end_facets["errorMessage"] = ErrorMessageRunFacet(message=failed, programmingLanguage="python")
        return [
            event(RunState.START, self.started, {}, False),
            event(RunState.FAIL if failed else RunState.COMPLETE, datetime.now(UTC), end_facets, True),
        ]
