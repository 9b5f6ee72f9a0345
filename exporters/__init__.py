"""Outputs of a trace: the documented JSON trace (``json_trace``); OTLP, OTLP JSON
and Perfetto exporters join it here."""
