"""The one exception tree of edgeship.

    EdgeshipError                 every error edgeship raises on purpose
     ├── MissingDependencyError   an optional extra is not installed (names the pip command)
     ├── BundleError              a bundle or model file cannot be used
     │    ├── NotABundleError     the path is no bundle, bundle .tar or model file (also an InputError)
     │    ├── SchemaError         edgeship.json has an unknown or invalid field (names it)
     │    ├── IntegrityError      a file's sha256 does not match the manifest
     │    └── UnsafeArchiveError  a .tar holds an absolute path, '..', a link or a device
     ├── InputError               an input (image, array, argument) is malformed
     │    ├── LimitError          an input is over a stated limit (pixels, decode memory): 413 when served
     │    ├── ContextLengthError  a prompt does not fit the LLM's context (edgeship.llm.errors)
     │    └── MemoryBudgetError   the server's planned peak memory does not fit its budget (names the parts)
     ├── ExportError              export failed or the exported model disagrees with torch
     ├── QuantizeError            quantization cannot be carried out on this model or data
     ├── ModelNotFoundError       an architecture name or import path does not resolve
     ├── BenchError               a benchmark could not be run
     ├── BackendError             a runtime backend is not available here, or was closed
     ├── SwapError                a live model swap was refused (the old model keeps serving)
     ├── GovernorError            an illegal move of the thermal governor's state machine (edgeship.monitor.governor)
     ├── UpdateError              an over-the-air update failed (edgeship.ota.errors, edgeship.ota.gate)
     │    ├── PublishError        the publisher refused; nothing changed (also an InputError)
     │    ├── TrustError          TUF verification failed (signature, expiry, rollback, hash, length)
     │    ├── TransferError       the repository is unreachable or a download ended early
     │    ├── StoreError          the device store cannot be read or written
     │    ├── StateError          a transition the updater's state machine does not allow
     │    ├── GateFailed          the candidate failed a check (never retried)
     │    └── GateCrashed         the process loading the candidate died
     ├── LLMError                 llama.cpp failed (edgeship.llm.errors)
     │    └── GenerationFailed    it failed mid-generation (edgeship.llm.queueing)
     └── RequestError             a served request refused, with its HTTP status (4xx: the client's, 5xx: ours)
          ├── ApiError            /v1 vision, /v2 KServe, describe (edgeship.serve.errors)
          │    ├── UploadError    the body is not an acceptable picture (also an InputError)
          │    ├── Overloaded     503 with Retry-After: the queue is full or the server is stopping
          │    └── Refused        the guard's 401/413/503, before any route runs (edgeship.serve.guard)
          └── OpenAIError         the OpenAI routes, answered in OpenAI's error body (edgeship.llm.openai_protocol)

Also InputErrors: NotABundleError, PublishError and UploadError. Private exceptions (a leading
underscore) never leave the module that raises them: each is caught there and translated.

Foreign exceptions are translated at the boundary with ``raise ... from exc`` so
the user sees what was wrong and what to do, and the cause stays in the chain.
"""

from __future__ import annotations


class EdgeshipError(Exception):
    """Base class of every error edgeship raises on purpose."""


class MissingDependencyError(EdgeshipError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class BundleError(EdgeshipError):
    """A bundle or bare model file cannot be read, written or verified."""


class InputError(EdgeshipError, ValueError):
    """An input given by the user (image, array, option) is malformed."""


class LimitError(InputError):
    """An input is over a limit edgeship states (pixels, bytes to decode, ...); the message names the limit."""


class MemoryBudgetError(InputError):
    """The planned peak memory of a server does not fit its memory budget; the message names the parts."""


class NotABundleError(BundleError, InputError):
    """The path given is not a bundle folder, a bundle archive or a model file edgeship reads."""


class SchemaError(BundleError):
    """edgeship.json has an unknown, missing or invalid field."""


class IntegrityError(BundleError):
    """A file in the bundle does not match the sha256 in its manifest."""


class UnsafeArchiveError(BundleError):
    """A bundle archive holds an entry that would escape or subvert the target folder."""


class ExportError(EdgeshipError):
    """Export failed, or the exported model disagrees with its source beyond tolerance."""


class QuantizeError(EdgeshipError):
    """Quantization could not be carried out (the model or data do not allow it)."""


class ModelNotFoundError(EdgeshipError, LookupError):
    """A model name or ``package.module:function`` path does not resolve."""


class BenchError(EdgeshipError):
    """A benchmark could not be run as asked."""


class BackendError(EdgeshipError):
    """A runtime backend is not part of this install or this host, or its session was closed."""


class SwapError(EdgeshipError):
    """A live swap of a served model was refused (e.g. its golden check failed); nothing changed."""


class RequestError(EdgeshipError):
    """A request the server refuses, with the HTTP status it is answered with.

    >>> raise RequestError(404, "model 'x' is not served")

    ``status`` below 500 says the client was wrong: the server logs one line, never a traceback.
    """

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def client_error(self) -> bool:
        return 400 <= self.status < 500
