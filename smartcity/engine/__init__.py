"""The engine process: ingest, batching and (in later issues) inference and tracking."""
