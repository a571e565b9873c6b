"""OpenTelemetry from the log: spans per the GenAI semantic conventions, exported over OTLP/HTTP.

``spans.SpanProjector`` is the pure part (events in, finished spans out); ``export`` sends
them with the SDK's OTLP/HTTP exporter; ``follow`` exports a task, a date range or the
live log; ``cli`` holds ``agentledger otel``.
"""
