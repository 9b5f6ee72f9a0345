"""The trace model and its files: the columnar ``Trace``, the raw event encoding
and how events become calls, the JSON and spool formats (save, load, checks),
merging processes, redaction and the plain tree view. Imports no other layer."""
