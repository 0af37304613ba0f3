"""Artifact stores: where a study keeps its trials' sample images, a folder (on a shared file
system) or an S3 prefix, behind Optuna's artifact-store protocol, for every writer and reader
(workers, report, dashboard). A study records a non-default store (``--artifacts``) in its user
attribute ``artifacts``; `artifact_location` says which store a study uses.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srnas.errors import MissingExtraError, StudyError, first_line
from srnas.fileio import atomic_write, write_error

if TYPE_CHECKING:
    from srnas.studies import StudyHome

#: The user attribute in which a study records a non-default artifact store (``--artifacts``).
ARTIFACTS_ATTR = "artifacts"


def is_s3_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.startswith("s3://")


def normalize_artifact_location(location: str | Path) -> str:
    """``--artifacts`` as recorded in a study: ``s3://bucket[/prefix]`` unchanged (no trailing
    ``/``), a folder (or ``file://`` URL) as an absolute path, so that every worker and reader
    of a shared file system finds the same folder."""
    text = str(location).strip()
    if is_s3_url(text):
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        if not bucket:
            raise StudyError(f"--artifacts {text!r}: no bucket; expected s3://BUCKET or s3://BUCKET/PREFIX")
        return f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")
    if "://" in text and not text.startswith("file://"):
        raise StudyError(f"--artifacts {text!r}: expected a folder, file:///PATH or s3://BUCKET/PREFIX")
    if not text.removeprefix("file://"):
        raise StudyError("--artifacts is empty; give a folder or s3://BUCKET/PREFIX")
    return str(Path(text.removeprefix("file://")).expanduser().resolve())


def artifact_location(user_attrs: Mapping[str, Any], home: "StudyHome") -> str:
    """Where a study keeps its artifacts: the store it recorded (``--artifacts``, in its
    ``user_attrs``), else its folder's ``artifacts/``. Every writer and reader (workers,
    report, dashboard) asks here."""
    recorded = user_attrs.get(ARTIFACTS_ATTR)
    return str(recorded) if recorded else str(home.artifacts)


class ArtifactStore:
    """Optuna's artifact-store protocol (``open_reader``, ``write``, ``remove``) on a folder or an
    S3 prefix; ``written`` is the id of the last artifact written (so that a failed upload can
    remove it) and ``location`` says where the store is. Build it with `open_artifact_store`."""

    def __init__(self, location: str, backend: Any, prefix: str = "") -> None:
        self.location = location
        self.backend = backend
        self.prefix = prefix
        self.written: str | None = None

    def __repr__(self) -> str:
        return f"ArtifactStore({self.location!r})"

    def open_reader(self, artifact_id: str) -> Any:
        return self.backend.open_reader(self.prefix + artifact_id)

    def write(self, artifact_id: str, content_body: Any) -> None:
        self.backend.write(self.prefix + artifact_id, content_body)
        self.written = artifact_id

    def remove(self, artifact_id: str) -> None:
        self.backend.remove(self.prefix + artifact_id)


def _folder_backend(base: Path) -> Any:
    """Optuna's file-system artifact store writing each artifact atomically (`atomic_write`:
    the file appears whole or not at all, with the umask's mode; a full disk is one line)."""
    from optuna.artifacts import FileSystemArtifactStore  # lazy: optuna (start-up)

    class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
        def write(self, artifact_id: str, content_body: Any) -> None:
            atomic_write(self._get_filepath(artifact_id), lambda handle: shutil.copyfileobj(content_body, handle))

    return AtomicFileSystemArtifactStore(base)


#: Seconds an S3 call may wait to connect, and for an answer, before it counts as failed.
S3_TIMEOUT_S = 10


def _s3_client() -> Any:
    """A boto3 S3 client configured the AWS way (credentials, region and ``AWS_ENDPOINT_URL``
    for an S3-compatible server such as MinIO come from the environment or ~/.aws)."""
    try:
        import boto3  # lazy: optional boto3 (the s3 extra)
    except ImportError:
        raise MissingExtraError("boto3", "s3", "an s3:// artifact store") from None
    from botocore.config import Config  # lazy: optional boto3 (the s3 extra)

    # Bounded: an endpoint that accepts and never answers fails in seconds, not minutes.
    return boto3.client("s3", config=Config(connect_timeout=S3_TIMEOUT_S, read_timeout=S3_TIMEOUT_S,
                                            retries={"max_attempts": 3, "mode": "standard"}))


def open_artifact_store(location: str | Path) -> ArtifactStore:
    """The artifact store at ``location``: a folder (created on the first write), or
    ``s3://BUCKET[/PREFIX]`` through Optuna's `Boto3ArtifactStore` (``pip install
    'srnas[s3]'``; keys are ``PREFIX/<artifact id>``)."""
    text = str(location)
    if is_s3_url(text):
        client = _s3_client()  # before Optuna's module: it remembers a failed boto3 import for good
        from optuna.artifacts import Boto3ArtifactStore  # lazy: optuna (start-up)

        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        # avoid_buf_copy=False: boto3's upload_fileobj may close the file it is given.
        return ArtifactStore(text, Boto3ArtifactStore(bucket, client=client), f"{prefix}/" if prefix else "")
    return ArtifactStore(text, _folder_backend(Path(text.removeprefix("file://"))))


def check_artifact_store(location: str) -> None:
    """One `StudyError` line when the store at ``location`` cannot be used (no bucket, no
    credentials, endpoint unreachable, a folder that cannot be created), before a search
    writes anything there."""
    if not is_s3_url(location):
        folder = Path(location.removeprefix("file://"))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(folder, exc) from None
        if not os.access(folder, os.W_OK):
            raise StudyError(f"--artifacts {folder}: folder not writable")
        return
    store = open_artifact_store(location)
    try:
        store.backend.client.head_bucket(Bucket=store.backend.bucket)
    except Exception as exc:  # botocore: NoCredentialsError, ClientError (404, 403), EndpointConnectionError
        response = getattr(exc, "response", None)
        code = (response or {}).get("Error", {}).get("Code", "") if isinstance(response, dict) else ""
        why = {"404": "no such bucket", "NoSuchBucket": "no such bucket", "403": "access denied",
               "AccessDenied": "access denied"}.get(str(code), first_line(exc))
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS"
        raise StudyError(f"--artifacts {location}: {why} (endpoint {endpoint}; credentials and AWS_ENDPOINT_URL "
                         "come from the environment or ~/.aws)") from None
