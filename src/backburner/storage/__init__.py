"""Object storage for what is too big for a row: uploaded originals and large results.

The local filesystem by default (beside the SQLite database), any S3-compatible store with
`BACKBURNER_STORAGE_URL=s3://bucket/prefix`; both through `obstore`, whose calls run on
its own threads and never block the event loop. Objects are sealed (AES-256-GCM) before
they leave the process, the same as the database's sealed columns.
"""

from backburner.storage.objects import (
    ObjectMissing,
    Objects,
    Sealer,
    document_key,
    is_shared,
    open_objects,
    result_key,
    storage_location,
)

__all__ = [
    "ObjectMissing",
    "Objects",
    "Sealer",
    "document_key",
    "is_shared",
    "open_objects",
    "result_key",
    "storage_location",
]
