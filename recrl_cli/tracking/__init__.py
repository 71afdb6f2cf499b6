"""Experiment tracking: the Tracker protocol, in-memory trackers and tracking-URI resolution.

The MLflow implementation lives in `recrl_cli.tracking.mlflow_tracker` (`make_mlflow_tracker`) and
the UI server helpers in `recrl_cli.tracking.server`; neither is imported here, so that importing
this package stays fast (mlflow takes seconds to import).
"""

from recrl_cli.tracking.base import (
    NullTracker,
    RecordedRun,
    RecordingTracker,
    RunInfo,
    Tracker,
    flatten_params,
    resolve_tracking_uri,
)

__all__ = [
    "NullTracker",
    "RecordedRun",
    "RecordingTracker",
    "RunInfo",
    "Tracker",
    "flatten_params",
    "resolve_tracking_uri",
]
