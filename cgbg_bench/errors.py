"""Typed errors. Each message names the problem and, where there is one, the fix."""

from __future__ import annotations

__all__ = [
    "EnergiesFileError",
    "UnsafeArchive",
    "ModelLimitExceeded",
    "ModelTimeout",
    "ModelMemoryLimit",
    "ModelCrashed",
    "CgbgError",
    "UsageError",
    "DeviceError",
    "SchedulerError",
    "MissingExtra",
    "OutputPathError",
    "TaskError",
    "TaskNotFound",
    "TaskSchemaError",
    "TaskFileMissing",
    "HashMismatch",
    "SubmissionError",
    "UnsupportedFormat",
    "PMFContractError",
    "DataError",
    "MappingError",
    "MDError",
    "RunSettingsMismatch",
    "RunLocked",
    "LeaderboardError",
    "EntrySchemaError",
    "EntryFileMissing",
    "EntryHashMismatch",
    "StaleResults",
    "MissingResults",
    "ReproductionMismatch",
    "ImpossibleResult",
    "EntryPathError",
    "NothingCompared",
    "TaskFileUnlisted",
]


class CgbgError(Exception):
    """Base class of every error raised on purpose by cgbg-bench."""


class UsageError(CgbgError, ValueError):
    """A command-line argument or function parameter has a value that cannot work."""


class DeviceError(UsageError):
    """The requested torch device does not exist or is not available on this machine."""


class SchedulerError(UsageError):
    """``--scheduler`` (``scheduler``) is not ``local:N`` or a scheduler address, or no scheduler answers there."""


class MissingExtra(CgbgError, ImportError):
    """An optional feature needs a package that is not installed; the message names the extra to install."""


class OutputPathError(UsageError):
    """An output file cannot be written (a directory, a missing or read-only folder, an unsupported suffix)."""


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


class UnsafeArchive(UnsupportedFormat):
    """An archive holds something that would run code on load (a pickle beyond plain tensors,
    compiled code, custom objects) or a program that calls non-tensor operators."""


class EnergiesFileError(SubmissionError):
    """An energies submission does not match the task's bank (fingerprint, length, unit, dtype)
    or holds non-finite energies."""


class ModelLimitExceeded(SubmissionError):
    """The model ran past a limit of its confined child process (time or memory)."""


class ModelTimeout(ModelLimitExceeded):
    """The model's child process ran past its wall-clock limit."""


class ModelMemoryLimit(ModelLimitExceeded):
    """The model's child process tried to use more memory than its cap."""


class ModelCrashed(SubmissionError):
    """The model's child process died (signal) or raised an unexpected error."""


class PMFContractError(SubmissionError):
    """The PMF loads but breaks the input/output contract (shape, dtype, finiteness)."""


class DataError(CgbgError, ValueError):
    """Input data (an array, an MD run) has the wrong shape, dtype or values, or too little of it."""


class MappingError(CgbgError, ValueError):
    """A topology lacks an atom or residue that a CG mapping needs."""


class MDError(CgbgError, RuntimeError):
    """An MD run cannot be set up, continued, or read."""


class RunSettingsMismatch(MDError, ValueError):
    """``md run`` was asked to append to a run directory made with different settings."""


class RunLocked(MDError):
    """Another process is writing to the same run directory."""


class LeaderboardError(CgbgError, ValueError):
    """A leaderboard entry (``leaderboard/submissions/*.yaml``) is wrong, stale or incomplete."""


class EntrySchemaError(LeaderboardError):
    """An entry has an unknown key, a missing key, a value of the wrong type, or a TODO left in."""


class EntryFileMissing(LeaderboardError, FileNotFoundError):
    """A model file that an entry lists by repository path is not on disk."""


class EntryHashMismatch(LeaderboardError):
    """A model file's sha256 differs from the one the entry records (or its results were made with another file)."""


class StaleResults(LeaderboardError):
    """Stored results were computed for another task version (or from outdated baseline scores)."""


class MissingResults(LeaderboardError):
    """An entry has a model for a task but no results for it, or results without a model."""


class ReproductionMismatch(LeaderboardError):
    """Re-evaluating an entry moved a metric beyond its stored error bar."""


class ImpossibleResult(EntrySchemaError):
    """A stored metric no evaluation can produce (JS far below its own noise floor, ESS outside (0, 1], ...)."""


class EntryPathError(EntrySchemaError):
    """An entry names a task that is not shipped, or a model path through a symlink or out of the repository."""


class NothingCompared(LeaderboardError):
    """``leaderboard reproduce`` could compare no stored value for an entry (say which and why)."""


class TaskFileUnlisted(TaskError):
    """A file in a task folder has no sha256 in its task.yaml, so it cannot be verified."""
