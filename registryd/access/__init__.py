"""Access decisions: the pure decision (``decision``, ``images``: no HTTP, no SQL) and the
facts it needs, cached per process (``facts``)."""
