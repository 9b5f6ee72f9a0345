"""Taking events out of a running recording so its memory stays bounded: the
mover thread, the spool file (streaming to disk) and the ring buffer (the last
N calls). Imports only ``otel_tracer.trace``."""
