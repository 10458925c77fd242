"""Typed errors. Each message names the problem and, where there is one, the fix."""

from __future__ import annotations

__all__ = [
    "CgbgError",
    "TaskError",
    "TaskNotFound",
    "TaskSchemaError",
    "TaskFileMissing",
    "HashMismatch",
    "SubmissionError",
    "UnsupportedFormat",
    "PMFContractError",
    "DataError",
]


class CgbgError(Exception):
    """Base class of every error raised on purpose by cgbg-bench."""


class TaskError(CgbgError, ValueError):
    """A task definition is wrong or incomplete."""


class TaskNotFound(TaskError, LookupError):
    """No task of that name; the message suggests the closest names."""


class TaskSchemaError(TaskError):
    """task.yaml has an unknown key, a missing key, or a value of the wrong type."""


class TaskFileMissing(TaskError, FileNotFoundError):
    """A file that a task lists is not on disk."""


class HashMismatch(TaskError):
    """A file's sha256 differs from the one recorded for it."""


class SubmissionError(CgbgError, ValueError):
    """A submitted PMF cannot be used."""


class UnsupportedFormat(SubmissionError):
    """The file is not a torch.export program (.pt2) or a TorchScript module (.pt)."""


class PMFContractError(SubmissionError):
    """The PMF loads but breaks the input/output contract (shape, dtype, finiteness)."""


class DataError(CgbgError, ValueError):
    """An array has the wrong shape, dtype, or non-finite values."""
