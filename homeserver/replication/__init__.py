"""Moving stream positions between processes: the stream bus (in-process now, Redis with workers)."""
