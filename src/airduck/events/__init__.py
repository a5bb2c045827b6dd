"""Events: typed run/step events, the sink interface and fan-out, and the stage-facing Reporter.

Core never prints: stages report progress through a :class:`Reporter`; a run turns everything into typed
events (airduck.events.types) and sends them to every sink."""

from airduck.events.reporter import LogReporter, Reporter
from airduck.events.sinks import EventSink, Fanout, ListSink, LogSink, ReporterSink, StepReporter
from airduck.events.types import (
    Event,
    Message,
    RunFinished,
    RunKilled,
    RunStarted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepSkipped,
    StepStarted,
)

__all__ = ["Event", "EventSink", "Fanout", "ListSink", "LogReporter", "LogSink", "Message", "Reporter",
           "ReporterSink", "RunFinished", "RunKilled", "RunStarted", "StepFailed", "StepFinished", "StepProgress", "StepReporter",
           "StepSkipped", "StepStarted"]
