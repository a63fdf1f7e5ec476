"""The one error hierarchy: every failure the pipeline reports on purpose is a ``DupPipelineError``.

``ConfigError`` (a bad parameter, found before any long work) maps to exit code 2 on the command
line; every other ``DupPipelineError`` maps to exit code 1 (see ``exit_code``). ``ConfigError`` is
also a ``ValueError`` so plain Python callers can catch it as one.
"""


class DupPipelineError(Exception):
    """A failure the pipeline explains in its message (never a raw traceback)."""


class ConfigError(DupPipelineError, ValueError):
    """A parameter has a value that is not allowed; the message names the parameter and the allowed values."""


class InputError(DupPipelineError):
    """The input (folder, list file or list) cannot be used."""


class WorkDirError(DupPipelineError):
    """The work_dir cannot be created, written, locked, or is not in the state the run mode needs."""


class ModelError(DupPipelineError):
    """The model cannot be used as an image embedding model."""


class LabelsError(DupPipelineError):
    """The labels cannot be read or matched to the images."""


def exit_code(error: DupPipelineError) -> int:
    """The command line's exit code for ``error``: 2 for a bad parameter, 1 for everything else."""
    return 2 if isinstance(error, ConfigError) else 1
